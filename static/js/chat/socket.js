// The chat websocket: JSON frames in and out, reconnecting with exponential backoff and jitter.
// The backoff starts over only once a connection has stayed open a while: one the server
// accepts and closes at once (its channel layer is down: 4012) is tried less and less often.
// A connection can also die without a close (a laptop asleep, a NAT or proxy dropping it when
// idle): the browser goes on calling it open. So a frame the server always answers arms a
// bound, and a connection that has sent nothing back by then is given up and replaced.
//
// Events: "open" (connected; re-subscribe here), "frame" (detail: a parsed server frame),
// "status" (detail: {state, delay}), "unauthorized" (closed with 4401: the session ended) and
// "too-many" (closed with 4429: the user has too many chat tabs open; reconnecting would loop).

const UNAUTHORIZED = 4401;
const TOO_MANY_SOCKETS = 4429;
// A connection open this long worked: the next drop reconnects from the shortest delay again.
const STABLE_MS = 15000;
// Frames the server answers (an event or an error) at once: sending one checks the connection.
const ANSWERED = new Set([
  "chat.send",
  "chat.regenerate",
  "chat.edit",
  "chat.switch",
  "chat.subscribe",
]);
// What a page showing no conversation checks with: a subscribe to none, which the server
// refuses at once (an error, nothing changed). The refusal is the answer, not passed on.
const CHECK = { type: "chat.subscribe", conversation_id: null, request_id: "connection-check" };
// A connection that answers none of them this long is taken for dead (a server under load
// still answers within a second or two).
const REPLY_MS = 10000;

export class ChatSocket extends EventTarget {
  constructor(path, { baseDelay = 500, maxDelay = 15000 } = {}) {
    super();
    this.path = path;
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.replyTimer = null; // armed while a frame waits for the server's first word back
    this.openedAt = null; // when the current connection opened (performance.now())
    this.stopped = false;
    window.addEventListener("online", () => this.reconnectNow());
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${window.location.host}${this.path}`);
    this.ws = ws;
    this.setStatus("connecting");
    ws.addEventListener("open", () => {
      this.openedAt = performance.now();
      this.setStatus("open");
      this.dispatchEvent(new Event("open"));
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return; // one given up: what it says now is out of date
      this.clearReplyTimer();
      this.receive(event.data);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws === ws) this.closed(event.code);
    });
  }

  closed(code) {
    this.ws = null;
    this.clearReplyTimer();
    if (this.openedAt !== null && performance.now() - this.openedAt >= STABLE_MS) {
      this.attempt = 0;
    }
    this.openedAt = null;
    if (code === UNAUTHORIZED || code === TOO_MANY_SOCKETS) {
      this.stopped = true;
      this.setStatus("closed");
      this.dispatchEvent(new Event(code === UNAUTHORIZED ? "unauthorized" : "too-many"));
      return;
    }
    this.scheduleReconnect();
  }

  /** Send a frame; false when the socket is not open (the caller tells the user). */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    if (ANSWERED.has(frame.type) && this.replyTimer === null) {
      this.replyTimer = setTimeout(() => this.giveUp(), REPLY_MS);
    }
    return true;
  }

  /** Check the connection with a frame that changes nothing (no conversation to ask for). */
  check() {
    return this.send(CHECK);
  }

  /** Whether a frame sent waits for the server's first word back (the bound is armed). */
  get awaitingReply() {
    return this.replyTimer !== null;
  }

  /** The connection answered nothing in time: it is dead whatever the browser says. Its close
   * could take minutes to come, so it is dropped now and the next one opened as after any
   * close. */
  giveUp() {
    this.replyTimer = null;
    const ws = this.ws;
    if (ws === null) return;
    this.closed(1006);
    ws.close();
  }

  clearReplyTimer() {
    clearTimeout(this.replyTimer);
    this.replyTimer = null;
  }

  /** The next delay: doubling from baseDelay up to maxDelay, then a random 50-100% of it. */
  nextDelay() {
    const ceiling = Math.min(this.maxDelay, this.baseDelay * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  scheduleReconnect() {
    if (this.stopped || this.timer !== null) return;
    const delay = this.nextDelay();
    this.setStatus("reconnecting", delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.isOpen || this.ws !== null) return;
    this.connect();
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // Not ours to interpret: the server only sends JSON.
    }
    if (frame?.type === "error" && frame.request_id === CHECK.request_id) return;
    if (frame && typeof frame.type === "string") {
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    }
  }

  setStatus(state, delay = 0) {
    this.state = state;
    document.documentElement.dataset.socket = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, delay } }));
  }
}
