// The chat page: wires the websocket, the message pane, the sidebar and the composer.

import { api } from "./api.js";
import { ConversationSettings } from "./conversation-settings.js";
import { MessageList } from "./messages.js";
import { Sidebar } from "./sidebar.js";
import { ChatSocket } from "./socket.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const $ = (id) => document.getElementById(id);

function newRequestId() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function byteLength(text) {
  return new TextEncoder().encode(text).length;
}

class ChatPage {
  constructor() {
    this.conversationId = config.conversationId;
    this.loaded = this.conversationId === null; // a new chat has nothing to fetch
    this.pending = null; // {requestId, content, user, assistant} for the message in flight
    this.lastSent = null;
    this.composer = $("composer");
    this.input = $("composer-input");
    this.sendButton = $("send-button");
    this.stopButton = $("stop-button");
    this.promptPicker = $("prompt-picker");
    this.title = $("conversation-title");
    this.modelBadge = $("model-badge");
    this.notice = $("chat-notice");
    this.settings = new ConversationSettings({
      toggle: $("settings-toggle"),
      panel: $("settings-panel"),
      error: $("settings-panel-error"),
    });
    this.messages = new MessageList($("messages"), $("empty-state"), {
      regenerate: (view) => this.regenerate(view),
      retry: (view) => this.retry(view),
    });
    this.sidebar = new Sidebar({
      list: $("conversation-list"),
      search: $("conversation-search"),
      sentinel: $("conversation-sentinel"),
      status: $("conversation-status"),
      dialog: $("confirm-dialog"),
      handlers: {
        open: (id) => this.open(id, { push: true }),
        deleted: (id) => id === this.conversationId && this.startNew({ push: true }),
        renamed: (id, title) => id === this.conversationId && this.setTitle(title),
        notify: (text) => this.showNotice(text),
      },
    });
    this.socket = new ChatSocket(config.socketPath);
    this.bindSocket();
    this.bindComposer();
    this.bindDrawer();
    window.addEventListener("popstate", () => this.followLocation());
    // For tests and debugging: the page's live objects.
    window.chatPage = this;
  }

  start() {
    this.sidebar.setActive(this.conversationId);
    this.sidebar.reload();
    this.socket.connect();
    if (this.conversationId !== null) this.open(this.conversationId, { push: false });
    else this.startNew({ push: false });
  }

  // ---- websocket -------------------------------------------------------------------------

  bindSocket() {
    this.socket.addEventListener("open", () => {
      if (this.pending && this.conversationId === null) {
        // The connection dropped before the server confirmed the new conversation.
        this.failPending("The connection dropped while sending: check the list, then resend.");
        this.sidebar.reload();
      }
      this.subscribe();
      this.updateComposer();
    });
    this.socket.addEventListener("status", (event) => this.showConnection(event.detail));
    this.socket.addEventListener("unauthorized", () => {
      this.showNotice("Your session ended. Reload the page to sign in again.");
      this.updateComposer();
    });
    this.socket.addEventListener("frame", (event) => this.handleFrame(event.detail));
  }

  subscribe() {
    if (this.conversationId !== null && this.loaded) {
      this.socket.send({ type: "chat.subscribe", conversation_id: this.conversationId });
    }
  }

  handleFrame(frame) {
    const handler = {
      "conversation.created": () => this.onConversationCreated(frame),
      "conversation.state": () => this.onConversationState(frame),
      "message.created": () => this.onMessageCreated(frame),
      "message.delta": () => this.onDelta(frame),
      "message.done": () => this.onDone(frame),
      "message.error": () => this.onMessageError(frame),
      "message.retrying": () => this.onRetrying(frame),
      error: () => this.onError(frame),
    }[frame.type];
    if (handler) handler();
  }

  isMine(frame) {
    return this.pending !== null && frame.request_id === this.pending.requestId;
  }

  onConversationCreated(frame) {
    if (!this.isMine(frame)) {
      this.sidebar.upsert(frame.conversation);
      return;
    }
    this.conversationId = frame.conversation.id;
    this.loaded = true;
    window.history.pushState({}, "", `/c/${this.conversationId}/`);
    this.setTitle(frame.conversation.title);
    this.sidebar.upsert(frame.conversation);
    this.sidebar.setActive(this.conversationId);
    this.updateComposer();
  }

  onMessageCreated(frame) {
    const message = frame.message;
    if (message.conversation_id !== this.conversationId) return;
    let view = this.messages.get(message.id);
    if (!view && this.isMine(frame)) {
      view = message.role === "user" ? this.pending.user : this.pending.assistant;
      view.setId(message.id);
    }
    if (!view && message.role === "assistant") {
      // A regenerated answer arrives as a new message: it takes the old one's place
      // (named by `replaces`; the flag covers a server that does not name it).
      const replaced =
        this.messages.get(message.replaces ?? null) ||
        this.messages.views.find((v) => v.replacing);
      if (replaced) this.messages.remove(replaced);
    }
    if (message.role === "user" && this.isMine(frame)) this.settings.commit(this.pending.settings);
    if (view) view.applyState({ status: message.status, content: message.content || view.content });
    else view = this.messages.add(message);
    // The conversation's model until the stored row says otherwise (after the answer ends).
    if (message.role === "assistant" && !view.model) view.model = this.modelBadge.textContent;
    if (message.role === "assistant" && this.isMine(frame)) this.pending = null;
    this.messages.refresh();
    this.updateComposer();
  }

  onDelta(frame) {
    const view = this.messages.get(frame.message_id);
    if (!view) return;
    const wasStreaming = view.isStreaming;
    view.appendDelta(frame.text, frame.seq);
    if (!wasStreaming) {
      this.messages.refresh();
      this.updateComposer();
    }
  }

  onDone(frame) {
    const view = this.messages.get(frame.message_id);
    if (!view) return;
    view.finish({ status: frame.status, usage: frame.usage });
    const said = { complete: "Answer complete", stopped: "Stopped" }[frame.status];
    this.announce(said || "The answer ended early");
    this.messages.refresh();
    this.updateComposer();
    this.refreshConversation();
  }

  onMessageError(frame) {
    const view = frame.message_id === null ? null : this.messages.get(frame.message_id);
    this.announce(`Error: ${frame.error?.message || "the answer failed."}`);
    if (view) {
      view.fail(frame.error);
    } else {
      this.failPending(frame.error?.message || "The message could not be sent.");
    }
    this.messages.refresh();
    this.updateComposer();
  }

  onRetrying(frame) {
    this.announce("Retrying…");
    this.messages.get(frame.message_id)?.setRetrying(frame.attempt, frame.delay);
  }

  onError(frame) {
    const text = frame.error?.message || "The server refused the request.";
    this.announce(`Error: ${text}`);
    if (this.isMine(frame) && frame.error?.field) {
      this.settings.showError(frame.error.field, text);
      this.modelBadge.textContent = this.settings.base?.model ?? this.modelBadge.textContent;
    }
    const replacing = this.messages.views.find((v) => v.replacing);
    if (this.isMine(frame)) this.failPending(text);
    else if (replacing) {
      replacing.restore();
      this.showNotice(text);
    } else this.showNotice(text);
    this.messages.refresh();
    this.updateComposer();
  }

  /** The send failed before an answer existed: drop the placeholder, give the text back. */
  failPending(text) {
    if (this.pending) {
      const { user, assistant, content } = this.pending;
      if (user.id === null) this.messages.remove(user);
      if (assistant.id === null) this.messages.remove(assistant);
      if (!this.input.value) this.input.value = content;
      this.pending = null;
      this.autosize();
    }
    this.showNotice(text, { retry: this.lastSent !== null });
  }

  onConversationState(frame) {
    if (frame.conversation_id !== this.conversationId) return;
    if (this.pending) {
      // The server's list already holds whatever the connection drop left unconfirmed.
      this.messages.remove(this.pending.user);
      this.messages.remove(this.pending.assistant);
      this.pending = null;
    }
    const seen = new Set();
    for (const message of frame.messages) {
      if (message.role === "system") continue;
      seen.add(message.id);
      const view = this.messages.get(message.id);
      if (view) view.applyState(message);
      else this.messages.add(message);
    }
    for (const view of [...this.messages.views]) {
      if (view.id !== null && !seen.has(view.id)) this.messages.remove(view);
    }
    this.sortViews();
    this.messages.refresh();
    this.updateComposer();
  }

  sortViews() {
    const ordered = [...this.messages.views].sort(
      (a, b) => (a.id ?? Number.MAX_SAFE_INTEGER) - (b.id ?? Number.MAX_SAFE_INTEGER),
    );
    this.messages.views = ordered;
    for (const view of ordered) this.messages.container.append(view.element);
  }

  // ---- conversations ----------------------------------------------------------------------

  async open(id, { push }) {
    this.conversationId = id;
    this.loaded = false;
    this.pending = null;
    this.messages.clear();
    this.showSystemPrompt(null);
    this.hideNotice();
    this.setTitle("Loading…");
    this.sidebar.setActive(id);
    this.closeDrawer();
    if (push) window.history.pushState({}, "", `/c/${id}/`);
    this.updateComposer();
    let data;
    try {
      data = await api(`/api/conversations/${id}/`);
    } catch (error) {
      if (this.conversationId === id) {
        this.setTitle("Conversation unavailable");
        this.showNotice(error.message);
      }
      return;
    }
    if (this.conversationId !== id) return; // the user moved on meanwhile
    this.renderConversation(data);
    this.loaded = true;
    this.subscribe();
    this.updateComposer();
    this.input.focus();
  }

  renderConversation(data) {
    this.setTitle(data.title);
    this.showSystemPrompt(data.system_prompt);
    if (data.settings?.model) this.modelBadge.textContent = data.settings.model;
    this.settings.show(data.settings ?? null);
    this.messages.clear();
    for (const message of data.messages || []) {
      if (message.role !== "system") this.messages.add(message);
    }
    this.messages.scrollToBottom();
  }

  /** After an answer ends: the server's model, usage and (possibly new) title. */
  async refreshConversation() {
    const id = this.conversationId;
    if (id === null) return;
    let data;
    try {
      data = await api(`/api/conversations/${id}/`);
    } catch {
      return; // the live view is still right; this only adds details
    }
    if (this.conversationId !== id) return;
    this.setTitle(data.title);
    if ($("system-prompt").hidden) this.showSystemPrompt(data.system_prompt);
    this.sidebar.upsert({ id, title: data.title });
    if (data.settings?.model) this.modelBadge.textContent = data.settings.model;
    this.settings.refresh(data.settings);
    for (const message of data.messages || []) {
      const view = this.messages.get(message.id);
      if (view && !view.isStreaming) {
        view.applyState({ model: message.model, usage: message.usage, status: message.status });
      }
    }
  }

  /** The prompt the conversation started with, folded away above the messages. */
  showSystemPrompt(prompt) {
    const details = $("system-prompt");
    const content = prompt?.content || "";
    $("system-prompt-text").textContent = content;
    $("system-prompt-locked").hidden = !prompt?.locked;
    details.hidden = content === "";
    details.open = false;
  }

  startNew({ push }) {
    this.conversationId = null;
    this.showSystemPrompt(null);
    this.loaded = true;
    this.pending = null;
    this.messages.clear();
    this.hideNotice();
    this.setTitle("");
    this.modelBadge.textContent = config.defaultModel;
    this.settings.show(null);
    this.sidebar.setActive(null);
    this.closeDrawer();
    if (push && window.location.pathname !== "/") window.history.pushState({}, "", "/");
    this.updateComposer();
    this.input.focus();
  }

  followLocation() {
    const match = window.location.pathname.match(/^\/c\/(\d+)\/$/);
    if (match) this.open(Number(match[1]), { push: false });
    else this.startNew({ push: false });
  }

  setTitle(title) {
    const text = title || "New chat";
    this.title.textContent = text;
    document.title = `${text} · Llama team chat`;
  }

  // ---- sending ----------------------------------------------------------------------------

  bindComposer() {
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.input.addEventListener("input", () => this.autosize());
    this.stopButton.addEventListener("click", () => this.stop());
    $("new-chat").addEventListener("click", () => this.startNew({ push: true }));
    $("notice-retry").addEventListener("click", () => this.resend());
    $("notice-close").addEventListener("click", () => this.hideNotice());
  }

  send(content = this.input.value) {
    const text = content.trim();
    if (!text || this.busy) return;
    if (byteLength(text) > config.maxContentBytes) {
      this.showNotice(`That message is too long (the limit is ${config.maxContentBytes} bytes).`);
      return;
    }
    const requestId = newRequestId();
    const frame = {
      type: "chat.send",
      request_id: requestId,
      conversation_id: this.conversationId,
      content: text,
    };
    const promptId = this.promptPicker?.value;
    if (this.conversationId === null && promptId) frame.system_prompt_id = Number(promptId);
    const settings = this.settings.changes();
    if (Object.keys(settings).length) frame.settings = settings;
    if (!this.socket.send(frame)) {
      this.showNotice("Not connected to the server yet; your message was not sent.");
      return;
    }
    this.hideNotice();
    this.lastSent = text;
    const user = this.messages.add({ id: null, role: "user", content: text, status: "complete" });
    const assistant = this.messages.add({ id: null, role: "assistant", status: "pending" });
    this.pending = { requestId, content: text, user, assistant, settings };
    if (settings.model) this.modelBadge.textContent = settings.model;
    this.announce("Answering…");
    this.messages.scrollToBottom();
    if (content === this.input.value) this.input.value = "";
    this.autosize();
    this.updateComposer();
  }

  resend() {
    if (this.lastSent) this.send(this.lastSent);
  }

  stop() {
    const view = this.messages.streaming;
    if (view?.id !== null && view?.id !== undefined) {
      this.socket.send({ type: "chat.stop", message_id: view.id });
    }
  }

  regenerate(view) {
    if (this.busy || view.id === null) return;
    if (!this.socket.send({ type: "chat.regenerate", message_id: view.id })) {
      this.showNotice("Not connected to the server yet; try again in a moment.");
      return;
    }
    view.restart();
    view.replacing = true;
    this.announce("Answering…");
    this.messages.refresh();
    this.updateComposer();
  }

  retry(view) {
    this.regenerate(view);
  }

  get busy() {
    return this.pending !== null || this.messages.streaming !== null;
  }

  updateComposer() {
    const streaming = this.busy;
    this.sendButton.hidden = streaming;
    this.stopButton.hidden = !streaming;
    this.stopButton.disabled = !this.messages.streaming || this.messages.streaming.id === null;
    this.sendButton.disabled = !this.socket.isOpen || !this.loaded;
    $("prompt-row").hidden = this.conversationId !== null;
    const exportLink = $("export-link");
    exportLink.hidden = this.conversationId === null;
    if (this.conversationId !== null) {
      exportLink.href = `/api/conversations/${this.conversationId}/export?format=md`;
    }
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 240)}px`;
  }

  // ---- notices and connection -------------------------------------------------------------

  /** Milestones for screen readers (a polite live region; never every token). */
  announce(text) {
    $("chat-announcer").textContent = text;
  }

  showNotice(text, { retry = false } = {}) {
    $("chat-notice-text").textContent = text;
    $("notice-retry").hidden = !retry;
    this.notice.hidden = false;
  }

  hideNotice() {
    this.notice.hidden = true;
  }

  showConnection({ state, delay }) {
    const status = $("connection-status");
    const text = {
      connecting: "Connecting…",
      reconnecting: `Reconnecting in ${Math.ceil(delay / 1000)}s…`,
      closed: "Disconnected",
    }[state];
    status.textContent = text || "";
    status.hidden = !text;
    this.updateComposer();
  }

  // ---- phone-width drawer -----------------------------------------------------------------

  bindDrawer() {
    $("open-sidebar").addEventListener("click", () => this.openDrawer());
    $("close-sidebar").addEventListener("click", () => this.closeDrawer());
    $("drawer-backdrop").addEventListener("click", () => this.closeDrawer());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && document.body.classList.contains("drawer-open")) {
        this.closeDrawer();
      }
    });
  }

  openDrawer() {
    document.body.classList.add("drawer-open");
    $("open-sidebar").setAttribute("aria-expanded", "true");
    $("drawer-backdrop").hidden = false;
    $("new-chat").focus();
  }

  closeDrawer() {
    if (!document.body.classList.contains("drawer-open")) return;
    document.body.classList.remove("drawer-open");
    $("open-sidebar").setAttribute("aria-expanded", "false");
    $("drawer-backdrop").hidden = true;
    $("open-sidebar").focus();
  }
}

new ChatPage().start();
