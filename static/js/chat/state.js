// The chat page's state: one conversation, its messages and the send in flight.
//
// Plain data and the transitions the server's frames and the user's actions cause; nothing
// here touches the DOM. Each transition says what changed by bumping `rev` on the messages
// it touched; the page renders from this object alone (main.js `render`).

let nextKey = 1;

/** A message as the page holds it; `key` names it before the server gives it an id. */
function record(data) {
  return {
    key: nextKey++,
    id: data.id ?? null,
    parentId: data.parent_id ?? null, // the message it follows (conversations are trees)
    siblingIds: data.sibling_ids ?? [], // its versions, itself included, oldest first
    role: data.role,
    content: data.content ?? "",
    status: data.status ?? "complete",
    seq: data.seq ?? 0,
    model: data.model ?? "",
    usage: data.usage ?? null,
    finishReason: data.finish_reason ?? null, // the upstream's: "length" means it was cut off
    error: data.error ?? null,
    safety: data.safety ?? null, // what Llama Guard found, when the team screens
    format: data.format ?? null, // JSON output: the format asked for and whether it was kept
    attachments: data.attachments ?? [], // a question's files, as the server lists them
    redactions: data.redactions ?? [], // what the team's data filter replaced upstream
    // An answer's tool calls, in order: {id, name, arguments, status, content, is_error, ...}
    toolCalls: data.tool_calls ?? [],
    deciding: new Set(), // ids of calls whose approval or denial was just sent
    retrying: null, // {attempt, delay} while the server retries upstream
    replacing: false, // a regenerate was asked for; a new message may take this one's place
    previous: null, // what a refused regenerate brings back
    rev: 0,
  };
}

/** A file in the composer, uploading until the server has checked and stored it. */
function draftOf({ name, kind, bytes, batch = null }) {
  return {
    key: nextKey++,
    name,
    kind,
    bytes,
    batch, // the files added together (picked, pasted or dropped at once) share one
    status: "uploading",
    progress: 0,
    upload: null,
    error: "",
  };
}

/** Whether a refused send's files can never go: deleted (the day-old sweep of files never
 * sent, another tab) or sent with another message meanwhile. */
function filesGone(error) {
  return error.field === "attachments" && ["not_found", "attachment_used"].includes(error.code);
}

function touch(message, changes) {
  Object.assign(message, changes);
  message.rev += 1;
}

/** Whether two values of a message's field hold the same data (the server's are new objects). */
function same(a, b) {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

export function isStreaming(message) {
  return message.status === "streaming" || message.status === "pending";
}

export class ConversationState {
  constructor({ conversationId, defaultModel }) {
    this.defaultModel = defaultModel;
    this.conversationId = conversationId;
    this.loaded = conversationId === null; // a new chat has nothing to fetch
    this.title = "";
    this.model = defaultModel; // the model the next answer uses (the header's picker)
    this.systemPrompt = null; // {content, locked} of the conversation, once known
    // A temporary chat: not saved in history; the page deletes it when the user leaves it.
    this.temporary = false;
    this.teamId = null; // the team the conversation belongs to, once known
    this.messages = [];
    this.pending = null; // {requestId, content, attachments, settings, user, assistant, cut}
    this.editing = null; // the key of the question being edited in place
    this.landing = null; // the id of a message a search result named, until it is shown
    this.lastSent = null; // {content, attachments}: what a Retry in the notice sends again
    // Sends the user left before the server took them, by request id: a refusal gives them back.
    this.leftSends = new Map(); // requestId -> {content, attachments, title}
    // Files in the composer (kept when another conversation opens, as the typed text is):
    // {key, name, kind, bytes, status: "uploading" | "ready" | "failed", progress, upload, error}
    this.drafts = [];
    this.notice = null; // {text, retry, link?} above the composer
    this.announcement = ""; // the live region's text: milestones, never tokens
    this.socketOpen = false;
    this.connection = { state: "connecting", delay: 0 };
    this.resyncing = false; // a lost frame was noticed; a fresh conversation.state is on its way
  }

  // ---- derived ----------------------------------------------------------------------------

  get streaming() {
    return this.messages.find((m) => m.role !== "user" && isStreaming(m)) || null;
  }

  get busy() {
    return this.pending !== null || this.streaming !== null;
  }

  get lastAssistant() {
    const last = this.messages.at(-1);
    return last?.role === "assistant" ? last : null;
  }

  /** The newest question, the one the Up arrow in an empty composer edits. */
  get lastQuestion() {
    return this.messages.findLast((m) => m.role === "user" && m.id !== null) || null;
  }

  /** The id of the version `step` (-1, +1) away from this message, or null. */
  siblingStep(message, step) {
    const index = message.siblingIds.indexOf(message.id);
    if (index < 0) return null;
    return message.siblingIds[index + step] ?? null;
  }

  message(id) {
    if (id === null || id === undefined) return null;
    return this.messages.find((m) => m.id === id) || null;
  }

  /** The uploaded files the next send carries. */
  get readyUploads() {
    return this.drafts.filter((d) => d.status === "ready").map((d) => d.upload);
  }

  get uploading() {
    return this.drafts.some((d) => d.status === "uploading");
  }

  isMine(frame) {
    return this.pending !== null && frame.request_id === this.pending.requestId;
  }

  // ---- conversations ----------------------------------------------------------------------

  /** The user goes elsewhere: a send the server has not taken yet is remembered, so that its
   * refusal, arriving later, still gives its text and files back. */
  leave() {
    if (this.pending === null || this.pending.user.id !== null) return;
    const { requestId, content, attachments } = this.pending;
    this.leftSends.set(requestId, { content, attachments, title: this.title });
  }

  /** The server took a send the user had left (its question exists): nothing to give back. */
  leftSendTaken(frame) {
    if (frame.message?.role === "user") this.leftSends.delete(frame.request_id);
  }

  startNew() {
    this.leave();
    Object.assign(this, {
      conversationId: null,
      loaded: true,
      title: "",
      temporary: false,
      teamId: null,
      model: this.defaultModel,
      systemPrompt: null,
      messages: [],
      pending: null,
      editing: null,
      notice: null,
      resyncing: false,
    });
  }

  opening(id) {
    this.leave();
    Object.assign(this, {
      conversationId: id,
      loaded: false,
      title: "Loading…",
      temporary: false,
      teamId: null,
      systemPrompt: null,
      messages: [],
      pending: null,
      editing: null,
      notice: null,
      resyncing: false,
    });
  }

  /** The conversation as the JSON API returned it. */
  opened(data) {
    this.loaded = true;
    this.title = data.title;
    this.temporary = data.temporary === true;
    this.teamId = data.team_id ?? null;
    this.systemPrompt = data.system_prompt?.content ? data.system_prompt : null;
    if (data.settings?.model) this.model = data.settings.model;
    this.messages = (data.messages || []).filter((m) => m.role !== "system").map(record);
  }

  unavailable(text) {
    this.title = "Conversation unavailable";
    this.notice = { text, retry: false };
  }

  // ---- sending ----------------------------------------------------------------------------

  sending({ requestId, content, settings, attachments = [], edits = null }) {
    const user = record({ role: "user", content, status: "complete", attachments });
    const assistant = record({ role: "assistant", status: "pending" });
    // An edit's new version takes the edited question's place: the branch below it goes.
    const at = edits ? this.messages.indexOf(edits) : -1;
    const cut = at >= 0 ? this.messages.splice(at) : [];
    this.messages.push(user, assistant);
    this.editing = null;
    this.pending = { requestId, content, attachments, settings, user, assistant, cut };
    this.lastSent = { content, attachments };
    // The files sent leave the composer; they come back if the server refuses the send.
    const sent = new Set(attachments.map((a) => a.id));
    this.drafts = this.drafts.filter((d) => !(d.status === "ready" && sent.has(d.upload.id)));
    this.notice = null;
    if (settings.model) this.model = settings.model;
    this.announcement = "Answering…";
  }

  /**
   * The send failed before an answer existed: drop the placeholders; returns the text. Its
   * files go back into the composer (unless others were attached meanwhile), so editing and
   * sending again keeps them.
   */
  failPending(text, { retry, filesGone = false }) {
    let content = null;
    if (this.pending) {
      const { user, assistant, attachments, cut } = this.pending;
      this.messages = this.messages.filter(
        (m) => !((m === user || m === assistant) && m.id === null),
      );
      if (user.id === null) this.messages.push(...cut); // a refused edit: the branch returns
      content = this.pending.content;
      this.giveFilesBack(attachments, filesGone ? text : "");
      this.pending = null;
    }
    this.notice = { text, retry };
    return content;
  }

  /** A refused send's files go back into the composer, unless others were attached meanwhile.
   * Files the server no longer has (or that went with another message) come back failed, with
   * `error`, to be removed or attached anew: sent again, they would be refused again. */
  giveFilesBack(attachments, error) {
    if (this.drafts.length > 0) return;
    this.drafts = attachments.map((upload) => ({
      ...draftOf({ name: upload.name, kind: upload.kind, bytes: upload.bytes }),
      status: error ? "failed" : "ready",
      error,
      progress: 1,
      upload,
    }));
  }

  regenerating(message) {
    const { content, status, seq, usage, finishReason, error, toolCalls } = message;
    touch(message, {
      previous: { content, status, seq, usage, finishReason, error, toolCalls },
      toolCalls: [],
      content: "",
      seq: 0,
      status: "pending",
      usage: null,
      finishReason: null,
      error: null,
      replacing: true,
    });
    this.announcement = "Answering…";
  }

  startEditing(message) {
    if (message?.role === "user" && message.id !== null) this.editing = message.key;
  }

  stopEditing() {
    this.editing = null;
  }

  // ---- files in the composer -------------------------------------------------------------

  /** A new batch: files added together, announced together once all have arrived. */
  newBatch() {
    return nextKey++;
  }

  /** A file starts uploading; returns its draft. */
  addDraft({ name, kind, bytes, batch }) {
    const draft = draftOf({ name, kind, bytes, batch });
    this.drafts.push(draft);
    return draft;
  }

  draft(key) {
    return this.drafts.find((d) => d.key === key) || null;
  }

  draftProgress(key, progress) {
    const draft = this.draft(key);
    if (draft?.status === "uploading") draft.progress = progress;
  }

  draftUploaded(key, upload) {
    const draft = this.draft(key);
    if (!draft) return;
    // Its stored size from now on (a cleaned image is often much smaller than the file
    // picked): the server counts that against the message's cap, and so do the page's checks.
    Object.assign(draft, {
      status: "ready",
      progress: 1,
      upload,
      kind: upload.kind,
      bytes: upload.bytes,
    });
    this.announceBatch(draft.batch);
  }

  draftFailed(key, error) {
    const draft = this.draft(key);
    if (!draft) return;
    Object.assign(draft, { status: "failed", error });
    this.announceBatch(draft.batch);
  }

  /** Once every file of a batch is stored or refused, say so in one announcement:
   * "2 files attached: red.png, notes.txt", then why any failed. */
  announceBatch(batch) {
    const together = this.drafts.filter((d) => d.batch === batch);
    if (together.some((d) => d.status === "uploading")) return;
    const names = together.filter((d) => d.status === "ready").map((d) => d.upload.name);
    const failed = together.filter((d) => d.status === "failed");
    const errors = failed.map((d) => `Error: ${d.error}`).join(" ");
    let attached = names.length === 1 ? `${names[0]} attached` : "";
    if (names.length > 1) attached = `${names.length} files attached: ${names.join(", ")}`;
    this.announcement = attached && errors ? `${attached}. ${errors}` : attached || errors;
  }

  removeDraft(key) {
    this.drafts = this.drafts.filter((d) => d.key !== key);
  }

  // ---- server frames ----------------------------------------------------------------------

  conversationCreated(frame) {
    this.conversationId = frame.conversation.id;
    this.loaded = true;
    this.title = frame.conversation.title;
  }

  messageCreated(frame) {
    const data = frame.message;
    let message = this.message(data.id);
    if (!message && this.isMine(frame)) {
      message = data.role === "user" ? this.pending.user : this.pending.assistant;
      message.id = data.id;
    }
    if (!message && data.role === "assistant") {
      // A regenerated answer arrives as a new message: it takes the old one's place
      // (named by `replaces`; the flag covers a server that does not name it).
      const replaced =
        this.message(data.replaces ?? null) || this.messages.find((m) => m.replacing);
      if (replaced) this.messages = this.messages.filter((m) => m !== replaced);
    }
    if (message) {
      touch(message, {
        status: data.status,
        content: data.content || message.content,
        attachments: data.attachments ?? message.attachments,
        redactions: data.redactions ?? message.redactions,
        parentId: data.parent_id ?? message.parentId,
        siblingIds: data.sibling_ids ?? message.siblingIds,
      });
    } else {
      // Another tab's (or a regenerate's) message: its branch is the one shown now, so the
      // page keeps its messages up to the new one's parent. A parent the page does not
      // show means another branch: null, and the caller asks for the state.
      const parent = data.parent_id ?? null;
      const at = parent === null ? -1 : this.messages.findIndex((m) => m.id === parent);
      if (parent !== null && at < 0) return null;
      if (data.sibling_ids) this.messages.splice(at + 1);
      message = record(data);
      this.messages.push(message);
    }
    // The conversation's model until message.done names the one that answered.
    if (message.role === "assistant" && !message.model) message.model = this.model;
    if (message.role === "assistant" && this.isMine(frame)) this.pending = null;
    return message;
  }

  /** A live delta: "ok", "dropped" (held already, or a snapshot is coming) or "gap". */
  delta(frame) {
    const message = this.message(frame.message_id);
    if (!message || frame.seq <= message.seq || this.resyncing) return "dropped";
    if (frame.seq > message.seq + 1) {
      this.resyncing = true; // a frame was lost; the snapshot asked for holds it
      return "gap";
    }
    touch(message, {
      seq: frame.seq,
      content: message.content + frame.text,
      replacing: false,
      retrying: null,
      status: "streaming",
      error: null, // text after an end: the answer the reaper took for dead goes on
    });
    return "ok";
  }

  done(frame) {
    const message = this.message(frame.message_id);
    if (!message) return;
    const blocked = frame.status === "blocked";
    touch(message, {
      status: frame.status || "complete",
      usage: frame.usage ?? message.usage,
      model: frame.model || message.model,
      finishReason: frame.finish_reason ?? null,
      safety: frame.safety ?? message.safety,
      format: frame.format ?? message.format,
      // A blocked answer's text is withheld: the notice takes its place.
      content: blocked ? "" : message.content,
      replacing: false,
      retrying: null,
      // Complete after all: what ended it before (the reaper, taking it for dead) is undone.
      error: frame.status === "complete" ? null : message.error,
    });
    if (message.error?.message) return; // its message.error has said why it ended
    const said = {
      complete: "Answer complete",
      stopped: "Stopped",
      blocked: "The answer was blocked by your team's safety policy",
    }[frame.status];
    this.announcement = said || "The answer ended early";
  }

  messageError(frame) {
    const error = frame.error || {};
    const message = this.message(frame.message_id ?? null);
    if (message) {
      // The answer's notice is part of the message, not a live region: this says it once.
      this.announcement = `Error: ${error.message || "the answer failed."}`;
      touch(message, { status: "error", error, replacing: false, retrying: null });
      return null;
    }
    return this.failPending(error.message || "The message could not be sent.", {
      retry: error.retryable === true && this.lastSent !== null,
      filesGone: filesGone(error),
    });
  }

  /** message.tool_call and message.tool_result: the call as it stands now, by its id. */
  toolCall(frame) {
    const message = this.message(frame.message_id);
    if (!message) return;
    const calls = message.toolCalls.filter((c) => c.id !== frame.call.id);
    const at = message.toolCalls.findIndex((c) => c.id === frame.call.id);
    calls.splice(at < 0 ? calls.length : at, 0, frame.call);
    if (frame.call.status !== "awaiting_approval") message.deciding.delete(frame.call.id);
    touch(message, { toolCalls: calls });
    if (frame.call.status === "awaiting_approval") {
      this.announcement = `${frame.call.name} waits for your approval`;
    }
  }

  /** The user approved or denied a call: its buttons wait for the server's word. */
  deciding(message, callId) {
    message.deciding.add(callId);
    touch(message, {});
  }

  retrying(frame) {
    const message = this.message(frame.message_id);
    if (message) touch(message, { retrying: { attempt: frame.attempt, delay: frame.delay } });
    this.announcement = "Retrying…";
  }

  /** A refused frame (the notice above the composer, an alert, says why). Returns the text
   * of a send given back, if any. */
  refused(frame) {
    const error = frame.error || {};
    const text = error.message || "The server refused the request.";
    if (this.isMine(frame)) {
      // The server says whether a second try can succeed (never for a refused setting).
      return this.failPending(text, {
        retry: error.retryable === true && this.lastSent !== null,
        filesGone: filesGone(error),
      });
    }
    const left = this.leftSends.get(frame.request_id ?? null);
    if (left) {
      // Sent from elsewhere: the notice says where, and Retry would send it here instead.
      this.leftSends.delete(frame.request_id);
      this.giveFilesBack(left.attachments, filesGone(error) ? text : "");
      const where = left.title ? `in “${left.title}”` : "in a new chat";
      this.notice = { text: `Your message ${where} was not sent: ${text}`, retry: false };
      return left.content;
    }
    const replacing = this.messages.find((m) => m.replacing);
    if (replacing) {
      touch(replacing, { ...replacing.previous, replacing: false, previous: null });
    }
    this.undecide(); // a refused decision: its call still waits, and its buttons work again
    this.notice = { text, retry: false };
    return null;
  }

  /** Calls whose decision is still unanswered get their buttons back. */
  undecide() {
    for (const message of this.messages) {
      if (message.deciding.size) touch(message, { deciding: new Set() });
    }
  }

  /** conversation.state: the server's list replaces ours. Returns the text of a question the
   * connection dropped before the server had it, given back to be sent again. */
  snapshot(frame) {
    this.resyncing = false;
    this.undecide(); // the calls' statuses below are the server's word
    const listed = frame.messages.filter((m) => m.role !== "system");
    let lost = null;
    if (this.pending?.dropped && this.pending.user.id === null && !this.arrived(listed)) {
      lost = this.failPending(
        "The connection dropped before your message reached the server: send it again.",
        { retry: true },
      );
    } else if (this.pending) {
      // The server's list already holds whatever the connection drop left unconfirmed.
      const { user, assistant } = this.pending;
      this.messages = this.messages.filter((m) => m !== user && m !== assistant);
      this.pending = null;
    }
    const ids = new Set(listed.map((m) => m.id));
    this.messages = this.messages.filter((m) => m.id === null || ids.has(m.id));
    // By id: looking each one up in the list would make a long conversation's state quadratic.
    const known = new Map(this.messages.map((m) => [m.id, m]));
    for (const data of listed) {
      const message = known.get(data.id);
      if (!message) {
        this.messages.push(record(data));
        continue;
      }
      // The server's word on it: a regenerate asked before (lost with a dropped connection)
      // no longer marks it as the answer the next new one replaces.
      const changes = {
        content: data.content ?? message.content,
        status: data.status,
        replacing: false,
        previous: null,
      };
      if (data.seq !== undefined && data.seq !== null) changes.seq = data.seq;
      if (data.model) changes.model = data.model;
      if (data.usage !== undefined) changes.usage = data.usage;
      if (data.role === "assistant") changes.finishReason = data.finish_reason ?? null;
      // The first word on why it ended stays (the live message.error and the stored one agree).
      if (data.error && !message.error) changes.error = data.error;
      if (data.attachments) changes.attachments = data.attachments;
      if (data.safety !== undefined) changes.safety = data.safety;
      if (data.format !== undefined) changes.format = data.format;
      if (data.redactions) changes.redactions = data.redactions;
      if (data.role === "assistant") changes.toolCalls = data.tool_calls ?? [];
      if (data.sibling_ids) changes.siblingIds = data.sibling_ids;
      if (data.parent_id !== undefined) changes.parentId = data.parent_id;
      // A failed or cut-off answer keeps saying why, whatever state arrives later.
      if (!["error", "interrupted", "stopped"].includes(changes.status)) changes.error = null;
      // Only what changed is drawn again: a switch redraws the branch below it, not the rest.
      if (Object.entries(changes).some(([field, value]) => !same(message[field], value))) {
        touch(message, changes);
      }
    }
    const order = (m) => m.id ?? Number.MAX_SAFE_INTEGER;
    this.messages.sort((a, b) => order(a) - order(b));
    return lost;
  }

  /** Whether the server's list holds the pending question: a question of its text this page
   * has not seen yet (its message.created was lost with the connection). */
  arrived(listed) {
    const known = new Set(this.messages.map((m) => m.id));
    const { content } = this.pending;
    return listed.some((m) => m.role === "user" && !known.has(m.id) && m.content === content);
  }

  connectionDropped() {
    this.socketOpen = false;
  }
}
