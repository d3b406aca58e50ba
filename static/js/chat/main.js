// The chat page: frames and clicks change the conversation state, `render` draws it.

import { api, uploadFile } from "./api.js";
import {
  checkFiles,
  DraftTray,
  guessKind,
  IMAGE_SUFFIX,
  ImageViewer,
  imageRefusal,
} from "./attachments.js";
import { BudgetMeters } from "./budget.js";
import { ComposerDraft } from "./composer-draft.js";
import { ConversationSettings } from "./conversation-settings.js";
import { setText } from "./dom.js";
import { MessageList } from "./messages.js";
import { Sidebar } from "./sidebar.js";
import { ChatSocket } from "./socket.js";
import { ConversationState } from "./state.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const $ = (id) => document.getElementById(id);
const phoneWidth = window.matchMedia("(max-width: 768px)");
// Whether the team has a default prompt: "No system prompt" must then say so explicitly.
const hasDefaultPrompt = config.systemPrompts.some((prompt) => prompt.is_default);

function isTyping(target) {
  return target.closest?.("input, textarea, select, [contenteditable]") != null;
}

/** The page behind the open drawer: inert, so Tab and screen readers stay in the drawer.
 * Dialogs are left alone (a modal one makes the rest inert itself). */
function setBehindDrawerInert(inert) {
  const behind = document.querySelectorAll(
    "body > :not(.chat-app, dialog, script), .chat-app > :not(#sidebar, #drawer-backdrop)",
  );
  for (const element of behind) element.inert = inert;
}

function newRequestId() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** A subscribe's request id: a refusal naming it is about that conversation. */
function subscribeRequestId(conversationId) {
  return `subscribe-${conversationId}`;
}

function byteLength(text) {
  return new TextEncoder().encode(text).length;
}

const CONNECTION_TEXT = {
  connecting: () => "Connecting…",
  reconnecting: (delay) => `Reconnecting in ${Math.ceil(delay / 1000)}s…`,
  closed: () => "Disconnected",
};

/** The message a search result's address names (`/c/<id>/#message-<id>`), to land on. */
/** A conversation's settings (GET /api/conversations/<id>/) as the "This chat" panel takes them. */
function panelSettings(data) {
  return data.settings && { ...data.settings, response_format: data.response_format };
}

function messageInAddress() {
  const found = window.location.hash.match(/^#message-(\d+)$/);
  return found ? Number(found[1]) : null;
}

class ChatPage {
  constructor() {
    this.state = new ConversationState({
      conversationId: config.conversationId,
      defaultModel: config.defaultModel,
    });
    this.renderQueued = false;
    this.renderTimer = null; // a render due when a streaming answer's newer text may be drawn
    this.switching = null; // {target, step}: a chat.switch from the version arrows, until drawn
    this.regenerated = null; // {requestId, settings}: a chat.regenerate until its answer starts
    this.editCancelled = null; // a question whose edit was cancelled, until its Edit button shows
    this.shownPrompt = undefined; // the system prompt last drawn (redrawing would fold it)
    this.temporarySends = new Set(); // request ids of temporary chats not yet created
    this.loading = null; // the AbortController of the conversation loading, if any
    this.connectedBefore = false; // a connection opened once: the next one is a reconnect
    this.composer = $("composer");
    this.input = $("composer-input");
    this.askPlaceholder = this.input.placeholder; // "Message Llama…"
    this.sendButton = $("send-button");
    this.stopButton = $("stop-button");
    this.promptPicker = $("prompt-picker");
    this.starters = [...document.querySelectorAll("[data-starter]")]; // the team's suggestions
    this.modelPicker = $("model-picker");
    this.attachInput = $("attach-input");
    this.attachButton = $("attach-button");
    this.tray = new DraftTray({ list: $("draft-tray"), onRemove: (key) => this.removeDraft(key) });
    this.kept = new ComposerDraft(config.userId);
    this.restoreNotice = ""; // what restoring the kept draft could not bring back
    this.restoreDraft();
    this.viewer = new ImageViewer($("image-viewer"));
    this.settings = new ConversationSettings({
      toggle: $("settings-toggle"),
      panel: $("settings-panel"),
      form: $("settings-form"),
      modelPicker: this.modelPicker,
      limits: config.limits,
      team: config.currentTeamId,
      onModel: (model) => this.update(() => (this.state.model = model)),
    });
    this.messages = new MessageList({
      container: $("messages"),
      emptyState: $("empty-state"),
      jumpButton: $("jump-latest"),
      handlers: {
        regenerate: (message) => this.regenerate(message),
        edit: (message) => this.update(() => this.state.startEditing(message)),
        cancelEdit: (message) => this.cancelEdit(message),
        saveEdit: (message, text, files) => this.saveEdit(message, text, files),
        switchVersion: (message, step) => this.switchVersion(message, step),
        jumped: () => this.input.focus(),
        viewImage: (attachment, opener) => this.viewer.open(attachment, opener),
        decideTool: (message, callId, approve) => this.decideTool(message, callId, approve),
        announce: (text) => this.announce(text),
        redraw: () => this.update(),
      },
    });
    this.teamIds = new Set(config.teamIds); // the user's teams (one may be left meanwhile)
    this.teamLeft = null; // {current: {id, name}}: the page's team is no longer the user's
    this.teamGone = false; // the server said so (team.left), before the page checked
    this.checkingTeam = false;
    this.budget = new BudgetMeters($("budget-meters"), config.currentTeamId, {
      onNotFound: () => this.checkTeam(),
    });
    this.sidebar = new Sidebar({
      list: $("conversation-list"),
      search: $("conversation-search"),
      sentinel: $("conversation-sentinel"),
      status: $("conversation-status"),
      dialog: $("confirm-dialog"),
      team: config.currentTeamId,
      handlers: {
        open: (id, messageId) => this.open(id, { push: true, messageId }),
        deleted: (id) => id === this.state.conversationId && this.startNew({ push: true }),
        renamed: (id, title) => {
          if (id === this.state.conversationId) this.update(() => (this.state.title = title));
        },
        notify: (text) => this.update(() => (this.state.notice = { text, retry: false })),
        announce: (text) => this.announce(text),
        teamNotFound: () => this.checkTeam(),
      },
    });
    this.socket = new ChatSocket(config.socketPath);
    this.bindSocket();
    this.bindComposer();
    this.bindAttachments();
    this.bindDrawer();
    this.bindKeys();
    this.bindTemporary();
    this.bindTeamPicker();
    window.addEventListener("popstate", () => this.followLocation());
    // For tests and debugging: the page's live objects.
    window.chatPage = this;
  }

  get conversationId() {
    return this.state.conversationId;
  }

  start() {
    this.sidebar.setActive(this.state.conversationId);
    this.sidebar.reload();
    this.socket.connect();
    const id = this.state.conversationId;
    if (id !== null) this.open(id, { push: false, messageId: messageInAddress() });
    else this.startNew({ push: false });
    if (this.restoreNotice) this.state.notice = { text: this.restoreNotice, retry: false };
  }

  /** Change the state, then draw it (once per animation frame, however many changes). */
  update(change) {
    change?.();
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  /** Say something to screen readers (#chat-announcer), politely; the same words again too
   * (a second "Copied"): the region is emptied and drawn so first, then hears them as new
   * (emptied and filled within one frame, it would not have changed). */
  announce(text) {
    this.update(() => (this.state.announcement = ""));
    requestAnimationFrame(() =>
      requestAnimationFrame(() => this.update(() => (this.state.announcement = text))),
    );
  }

  // ---- websocket -------------------------------------------------------------------------

  bindSocket() {
    this.socket.addEventListener("open", () => {
      if (this.state.pending && this.state.conversationId === null) {
        // The connection dropped before the server confirmed the new conversation.
        this.givenBack(
          this.state.failPending(
            "The connection dropped while sending: check the list, then resend.",
            { retry: true },
          ),
        );
      } else if (this.state.pending) {
        // Sent before the drop: the state the subscription brings says whether it arrived.
        this.state.pending.dropped = true;
      }
      // What the list missed while the connection was down (the first time, it is loading).
      if (this.connectedBefore) this.sidebar.refresh();
      this.connectedBefore = true;
      this.subscribe();
      this.update();
    });
    this.socket.addEventListener("status", (event) => {
      this.update(() => {
        this.state.connection = event.detail;
        this.state.socketOpen = event.detail.state === "open";
      });
    });
    this.socket.addEventListener("unauthorized", () => {
      this.update(() => {
        this.state.notice = {
          text: "Your session ended. Reload the page to sign in again.",
          retry: false,
        };
      });
    });
    this.socket.addEventListener("too-many", () => {
      this.update(() => {
        this.state.notice = {
          text: "Too many chat tabs are open. Close some, then reload this page.",
          retry: false,
        };
      });
    });
    this.socket.addEventListener("frame", (event) => this.handleFrame(event.detail));
    // Back from sleep, another network, or the back-forward cache: the connection may have
    // died without a close. Asking for the conversation again tells (ChatSocket's reply
    // bound) and brings what was missed meanwhile.
    const check = () => this.checkConnection();
    window.addEventListener("online", check);
    window.addEventListener("pageshow", (event) => event.persisted && check());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") check();
    });
  }

  /** Subscribe again (on a new chat: a check that changes nothing), unless a frame sent
   * already waits for its answer, which checks the connection as well. */
  checkConnection() {
    if (this.socket.awaitingReply || this.state.pending) return;
    if (this.state.conversationId === null) this.socket.check();
    else this.subscribe();
  }

  subscribe() {
    const { conversationId, loaded } = this.state;
    if (conversationId !== null && loaded) {
      this.socket.send({
        type: "chat.subscribe",
        conversation_id: conversationId,
        request_id: subscribeRequestId(conversationId),
      });
    }
  }

  handleFrame(frame) {
    if (frame.type === "message.created") this.state.leftSendTaken(frame);
    // The socket still follows a conversation the page has left (for a new chat, or another
    // still loading) until it follows the next: its answers' events are not about this one.
    const elsewhere =
      frame.type.startsWith("message.") && frame.conversation_id !== this.state.conversationId;
    if (elsewhere) {
      if (frame.type === "message.done") this.budget.refreshSoon(); // it counted all the same
      return;
    }
    const handler = {
      "conversation.created": () => this.onConversationCreated(frame),
      "conversation.updated": () => this.onConversationUpdated(frame),
      "conversation.pinned": () => this.sidebar.setPinned(frame.conversation_id, frame.pinned),
      "conversation.deleted": () => this.onConversationDeleted(frame),
      "team.left": () => frame.team_id === config.currentTeamId && this.onTeamLeft(),
      "conversation.state": () => this.onConversationState(frame),
      "message.created": () => this.onMessageCreated(frame),
      "message.delta": () => this.onDelta(frame),
      "message.done": () => {
        this.budget.refreshSoon();
        return this.state.done(frame);
      },
      "message.error": () => {
        if (frame.error?.code === "forbidden") this.checkTeam(); // its owner left the team?
        return this.givenBack(this.state.messageError(frame));
      },
      "message.retrying": () => this.state.retrying(frame),
      "message.tool_call": () => this.state.toolCall(frame),
      "message.tool_result": () => this.state.toolCall(frame),
      "conversation.switched": () => this.onSwitched(frame),
      error: () => this.onError(frame),
    }[frame.type];
    if (handler) this.update(handler);
  }

  onConversationCreated(frame) {
    const mine = this.state.isMine(frame);
    if (this.temporarySends.delete(frame.request_id) && !mine) {
      // A temporary chat the user left before it existed: it ends now, never listed.
      api(`/api/conversations/${frame.conversation.id}/`, { method: "DELETE" }).catch(() => {
        // Left behind, the server deletes it once no socket follows it.
      });
      return;
    }
    // A temporary chat stays out of the list, and out of the address: a reload starts anew.
    if (mine && this.state.temporary) {
      this.state.conversationCreated(frame);
      return;
    }
    // Another tab's new conversation is listed only by the tabs listing its team.
    if (!mine && this.sidebar.team && frame.conversation.team_id !== this.sidebar.team) return;
    this.sidebar.upsert(frame.conversation);
    if (!mine) return;
    this.state.conversationCreated(frame);
    window.history.pushState({}, "", `/c/${frame.conversation.id}/`);
    this.sidebar.setActive(frame.conversation.id);
    this.loadSystemPrompt(frame.conversation.id);
  }

  /** The model named a conversation (or another tab's rename): the list and header follow. */
  onConversationUpdated(frame) {
    const { id, title } = frame.conversation;
    this.sidebar.retitle(id, title);
    if (id === this.state.conversationId) this.state.title = title;
  }

  /** Deleted in this tab or another: the list drops it, and the page leaves it (a draft stays). */
  onConversationDeleted(frame) {
    this.sidebar.remove(frame.conversation_id);
    if (frame.conversation_id === this.state.conversationId) this.startNew({ push: true });
  }

  onConversationState(frame) {
    if (frame.conversation_id === this.state.conversationId) {
      this.givenBack(this.state.snapshot(frame));
    }
  }

  onMessageCreated(frame) {
    if (frame.message.conversation_id !== this.state.conversationId) return;
    this.sidebar.touched(frame.message.conversation_id);
    if (frame.message.role === "user" && this.state.isMine(frame)) {
      this.settings.commit(this.state.pending.settings);
    } else if (frame.request_id && frame.request_id === this.regenerated?.requestId) {
      this.settings.commit(this.regenerated.settings);
      this.regenerated = null;
    } else if (frame.message.role === "assistant" && !this.state.isMine(frame)) {
      this.followSettings(frame.message.conversation_id); // another tab's, with its settings
    }
    // A message on a branch this page does not show: the state brings the branch.
    if (this.state.messageCreated(frame) === null) this.subscribe();
  }

  /** Another tab sent, edited or regenerated with settings of its own: they are the
   * conversation's now, so the picker and the panel show them (but what the user is
   * changing here), and the next message here sends what differs from them. */
  async followSettings(id) {
    await this.settings.follow(api(`/api/conversations/${id}/`).then(panelSettings));
    this.showLoadedModel(id);
  }

  /** The settings loaded for conversation `id` (null: a new chat, from the user's defaults,
   * saved on the settings page since this page opened too) name the model the next answer
   * uses: the picker shows it, unless the user picked another meanwhile. */
  showLoadedModel(id) {
    const model = this.settings.base?.model;
    if (this.state.conversationId !== id || !model || this.settings.edited.has("model")) return;
    this.update(() => (this.state.model = model));
  }

  /** Another tab (or this one) chose a branch: fetch it unless it is the one shown. */
  onSwitched(frame) {
    if (frame.conversation_id !== this.state.conversationId) return;
    if (this.state.messages.at(-1)?.id !== frame.leaf_id) this.subscribe();
  }

  onDelta(frame) {
    // A frame went missing (a layer restart, a dropped relay): the snapshot fills the gap.
    if (this.state.delta(frame) === "gap") this.subscribe();
  }

  onError(frame) {
    const error = frame.error || {};
    const id = this.state.conversationId;
    if (error.code === "not_found" && id !== null && frame.request_id === subscribeRequestId(id)) {
      // Deleted while the connection was down (its conversation.deleted never came).
      this.checkTeam(); // or deleted with its team?
      this.onConversationDeleted({ conversation_id: id });
      return;
    }
    if (error.code === "not_found" && this.state.isMine(frame)) this.checkTeam(); // left it?
    this.switching = null; // a refused switch leaves the keyboard where it is
    const regenerate = frame.request_id && frame.request_id === this.regenerated?.requestId;
    if (regenerate) this.regenerated = null;
    if ((this.state.isMine(frame) || regenerate) && error.field) {
      const reset =
        error.field === "model" ? this.settings.resetModel(this.state.defaultModel) : null;
      this.settings.showError(error.field, error.message || "");
      this.state.model = this.settings.base?.model ?? reset ?? this.state.model;
    }
    this.givenBack(this.state.refused(frame));
  }

  /** A send the server never took: its text goes back into the composer, below anything
   * typed since (nothing the user wrote is lost). */
  givenBack(content) {
    if (!content || this.input.value.trim() === content) return;
    const typed = this.input.value.trim();
    this.input.value = typed ? `${typed}\n\n${content}` : content;
    this.autosize();
  }

  // ---- conversations ----------------------------------------------------------------------

  async open(id, { push, messageId = null }) {
    const focused = document.activeElement;
    if (id !== this.state.conversationId) this.leaveTemporary();
    this.state.opening(id);
    this.state.landing = messageId;
    this.messages.stickToBottom = true;
    this.sidebar.setActive(id);
    this.closeDrawer();
    if (push) window.history.pushState({}, "", `/c/${id}/`);
    this.update();
    // Only the conversation landed on loads: those passed on the way stop (they would hold
    // the browser's connections).
    this.loading?.abort();
    const loading = new AbortController();
    this.loading = loading;
    const request = api(`/api/conversations/${id}/`, { signal: loading.signal });
    // Its settings fill the panel once loaded, but for those the user changes meanwhile.
    this.settings.show(request.then(panelSettings));
    let data;
    try {
      data = await request;
    } catch (error) {
      if (loading.signal.aborted) return; // another was opened (or a new chat started)
      if (this.state.conversationId === id)
        this.update(() => this.state.unavailable(error.message));
      return;
    }
    if (this.state.conversationId !== id) return; // the user moved on meanwhile
    const model = this.state.model;
    this.state.opened(data);
    if (this.settings.edited.has("model")) this.state.model = model; // picked while it loaded
    this.messages.stickToBottom = this.state.landing === null;
    this.update();
    this.subscribe();
    const landing = this.state.landing;
    // A search hit in another version: show the branch it is on (conversation.state follows).
    if (landing !== null && !this.state.message(landing)) {
      this.socket.send({ type: "chat.switch", conversation_id: id, message_id: landing });
    }
    // The message box takes the keyboard, unless the user put it elsewhere while the
    // conversation loaded (a row's menu, the search box).
    const moved = document.activeElement !== focused && document.activeElement !== document.body;
    if (!moved) this.input.focus();
  }

  /** The prompt a new conversation started with (sent once, when it was created). */
  async loadSystemPrompt(id) {
    try {
      const data = await api(`/api/conversations/${id}/`);
      if (this.state.conversationId !== id || !data.system_prompt?.content) return;
      this.update(() => (this.state.systemPrompt = data.system_prompt));
    } catch {
      // Only a detail: the prompt shows when the conversation is next opened.
    }
  }

  startNew({ push }) {
    this.loading?.abort();
    this.leaveTemporary();
    this.state.startNew();
    this.messages.stickToBottom = true;
    // The defaults of a team the user has left are refused, and nothing can be sent here.
    if (this.teamLeft === null && !this.teamGone) {
      this.settings.show(null).then(() => this.showLoadedModel(null));
    }
    this.sidebar.setActive(null);
    this.closeDrawer();
    if (push && window.location.pathname !== "/") window.history.pushState({}, "", "/");
    this.update();
    this.input.focus();
  }

  /** New chat (the button, the shortcut): here, or once the page's team is left, in the
   * user's current team (the page reloads into it, as the notice's button does). */
  newChat() {
    if (this.teamLeft === null) this.startNew({ push: true });
    else window.location.assign("/");
  }

  // ---- temporary chats --------------------------------------------------------------------

  bindTemporary() {
    $("temporary-toggle").addEventListener("click", () => {
      // Only a new chat can become one, and one being sent is created as it was sent.
      if (this.state.conversationId !== null || this.state.pending) return;
      this.update(() => (this.state.temporary = !this.state.temporary));
      this.input.focus();
    });
    // Leaving the page ends a temporary chat too (the request outlives the page).
    window.addEventListener("pagehide", () => this.leaveTemporary({ keepalive: true }));
  }

  /** A temporary chat ends when the user leaves it: delete it (the server sweeps any left). */
  leaveTemporary({ keepalive = false } = {}) {
    const id = this.state.conversationId;
    if (!this.state.temporary || id === null) return;
    this.state.temporary = false;
    api(`/api/conversations/${id}/`, { method: "DELETE", keepalive }).catch(() => {
      // Left behind, the server deletes it once no socket follows it.
    });
  }

  // ---- teams ------------------------------------------------------------------------------

  /** Something of the page's team was refused: if the user has left it (or was removed, or it
   * was deleted), say so, offer their current team, and ask nothing more that can only fail. */
  /** The server says the page's team is no longer the user's: until `checkTeam` has asked
   * who they are, nothing more is asked of the team (a conversation deleted with it leaves
   * the page meanwhile). */
  onTeamLeft() {
    this.teamGone = true;
    return this.checkTeam();
  }

  async checkTeam() {
    if (this.teamLeft || this.checkingTeam) return;
    this.checkingTeam = true;
    let me;
    try {
      me = await api("/api/me/");
    } catch {
      return; // unreachable now: the next refusal asks again
    } finally {
      this.checkingTeam = false;
    }
    if (me.teams.some((team) => team.id === config.currentTeamId)) {
      this.teamGone = false; // joined again meanwhile
      return;
    }
    this.budget.stop();
    this.teamIds.delete(config.currentTeamId);
    this.markTeamLeft(config.currentTeamId);
    const focused = document.activeElement;
    this.update(() => {
      this.teamLeft = { current: me.current_team };
      if (this.state.conversationId === null) this.state.temporary = false; // none starts here
    });
    // Once that is drawn (the frame's callbacks run in order): the keyboard was on what is
    // now disabled or hidden (the message box, "This chat"), so it goes to the notice's way
    // out rather than to the page's start.
    requestAnimationFrame(() => {
      const stranded =
        focused instanceof HTMLElement &&
        (focused.matches(":disabled") || focused.closest("[hidden]") !== null);
      if (stranded) $("team-left-go").focus();
    });
    this.sidebar.teamLeft();
  }

  /** The picker keeps the team shown, marked, and offers only the user's teams to switch to;
   * the footer's team chip, the page's team too, is marked the same way. */
  markTeamLeft(teamId) {
    const chip = document.querySelector(".sidebar .team-chip");
    if (chip && !chip.classList.contains("is-left")) {
      const name = document.createElement("span");
      name.className = "team-chip-name";
      name.textContent = chip.textContent;
      chip.replaceChildren(name, " (left)"); // the name may be cut short, never "(left)"
      chip.classList.add("is-left");
      chip.title = `You are no longer a member of ${name.textContent}`;
    }
    const option = $("team-picker")?.querySelector(`option[value="${teamId}"]`);
    if (!option || option.disabled) return;
    option.textContent = `${option.textContent} (left)`;
    option.disabled = true;
  }

  bindTeamPicker() {
    // The session's team is the user's current one: the page reloads into it.
    $("team-left-go").addEventListener("click", () => window.location.assign("/"));
    const picker = $("team-picker");
    if (!picker) return;
    picker.addEventListener("change", async () => {
      const team = Number(picker.value);
      try {
        await api("/api/me/", { method: "PATCH", body: { current_team: team } });
      } catch (error) {
        picker.value = String(config.currentTeamId);
        this.update(() => (this.state.notice = { text: error.message, retry: false }));
        return;
      }
      // The team's prompts, models, budget and conversations: a new chat in the new team.
      window.location.assign("/");
    });
  }

  followLocation() {
    const match = window.location.pathname.match(/^\/c\/(\d+)\/$/);
    if (match) this.open(Number(match[1]), { push: false, messageId: messageInAddress() });
    else this.startNew({ push: false });
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
      } else if (event.key === "ArrowUp" && !event.shiftKey && this.input.value === "") {
        // As in other chats: Up in an empty box edits the last question.
        const last = this.state.lastQuestion;
        if (last && !this.state.busy) {
          event.preventDefault();
          this.update(() => this.state.startEditing(last));
        }
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      this.update();
    });
    // Typed just before a reload, the text may not have been drawn (and kept) yet.
    window.addEventListener("pagehide", () =>
      this.kept.save(this.input.value, this.state.readyUploads, config.currentTeamId),
    );
    this.stopButton.addEventListener("click", () => this.stop());
    $("new-chat").addEventListener("click", () => this.newChat());
    $("notice-retry").addEventListener("click", () => this.resend());
    $("notice-close").addEventListener("click", () =>
      this.update(() => (this.state.notice = null)),
    );
    for (const starter of this.starters) {
      starter.addEventListener("click", () => {
        this.send(starter.textContent);
        this.input.focus(); // the suggestions go away with the first question
      });
    }
  }

  /** Send `content` with `attachments` (upload summaries; default: the composer's files). */
  send(content = this.input.value, attachments = null) {
    const text = content.trim();
    const fromComposer = attachments === null;
    const files = fromComposer ? this.state.readyUploads : attachments;
    if ((!text && files.length === 0) || this.state.busy) return;
    // As the Send button, disabled meanwhile: the conversation, once shown, would replace the
    // question; the box keeps it.
    if (!this.state.loaded || this.readOnly) return;
    const waiting = fromComposer ? this.draftsWaiting() : "";
    if (waiting) {
      this.update(() => (this.state.notice = { text: waiting, retry: false }));
      return;
    }
    if (this.refusedAsTooLong(text)) return;
    const requestId = newRequestId();
    const frame = {
      type: "chat.send",
      request_id: requestId,
      conversation_id: this.state.conversationId,
      content: text,
    };
    if (files.length) frame.attachments = files.map((upload) => upload.id);
    const settings = this.panelSettings();
    if (settings === null) return;
    if (Object.keys(settings).length) frame.settings = settings;
    const promptId = this.promptPicker?.value;
    if (this.state.conversationId === null) frame.team_id = config.currentTeamId; // this page's
    if (this.state.conversationId === null && this.state.temporary) frame.temporary = true;
    if (this.state.conversationId === null && promptId) frame.system_prompt_id = Number(promptId);
    else if (this.state.conversationId === null && hasDefaultPrompt && this.promptPicker) {
      frame.settings = { ...frame.settings, system_prompt: "" }; // not the team's default
    }
    if (!this.socket.send(frame)) {
      const notice = "Not connected to the server yet; your message was not sent.";
      if (!this.input.value.trim()) this.input.value = text; // a starter's text waits in the box
      this.update(() => (this.state.notice = { text: notice, retry: false }));
      return;
    }
    if (frame.temporary) this.temporarySends.add(requestId);
    this.update(() =>
      this.state.sending({ requestId, content: text, settings, attachments: files }),
    );
    this.messages.stickToBottom = true;
    if (content === this.input.value) this.input.value = "";
    this.autosize();
  }

  resend() {
    const last = this.state.lastSent;
    if (last) this.send(last.content, last.attachments);
  }

  /** What the box held when the tab was reloaded (or closed and reopened), unsent. Its files
   * come back as stored; one swept since is refused at send, and comes back to attach again. */
  restoreDraft() {
    const saved = this.kept.load();
    if (!saved) return;
    this.input.value = saved.text;
    this.autosize();
    if (saved.team === config.currentTeamId) {
      this.state.giveFilesBack(saved.files, "");
    } else if (saved.files.length) {
      // Stored in the team the page showed then: a message here could not carry them.
      this.restoreNotice =
        "The files you attached in your other team were not kept: attach them again.";
    }
  }

  // ---- files ------------------------------------------------------------------------------

  bindAttachments() {
    this.attachButton.addEventListener("click", () => this.attachInput.click());
    this.attachInput.addEventListener("change", () => {
      this.addFiles([...this.attachInput.files]);
      this.attachInput.value = ""; // choosing the same file again fires change again
    });
    this.input.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      // Text pastes as usual, even when the clipboard also holds a picture of it (cells
      // copied from a spreadsheet, a paragraph from a word processor).
      if (files.length === 0 || event.clipboardData.getData("text/plain") !== "") return;
      event.preventDefault();
      this.addFiles(files);
    });
    // The whole page takes drops: a file dropped beside the chat would otherwise replace the
    // page with the file.
    const zone = document;
    const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    let depth = 0; // dragenter/dragleave fire for every child crossed
    zone.addEventListener("dragenter", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      depth += 1;
      this.composer.classList.toggle("is-drop-target", !this.readOnly);
    });
    zone.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    zone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) this.composer.classList.remove("is-drop-target");
    });
    zone.addEventListener("drop", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      depth = 0;
      this.composer.classList.remove("is-drop-target");
      this.addFiles([...event.dataTransfer.files]);
      this.input.focus();
    });
  }

  /** Check files against the caps and the model, then upload those that pass. */
  addFiles(files) {
    if (files.length === 0 || this.readOnly) return; // a drop where nothing can be sent
    const { accepted, refusals } = checkFiles(files, {
      drafts: this.state.drafts,
      limits: config.uploads,
      model: this.state.model,
    });
    this.update(() => {
      if (refusals.length) this.state.notice = { text: refusals.join(" "), retry: false };
      const batch = this.state.newBatch();
      for (const file of accepted) this.startUpload(file, batch);
    });
  }

  startUpload(file, batch) {
    const draft = this.state.addDraft({
      name: file.name || "pasted-image.png",
      kind: guessKind(file),
      bytes: file.size,
      batch,
    });
    // Stored in this page's team, whatever team another tab switched to since.
    uploadFile(file, config.currentTeamId, (progress) =>
      this.update(() => this.state.draftProgress(draft.key, progress)),
    )
      .then((data) => {
        if (this.state.draft(draft.key))
          this.update(() => this.state.draftUploaded(draft.key, data));
        else this.deleteUpload(data.id); // taken out of the composer while it uploaded
      })
      .catch((error) => this.update(() => this.state.draftFailed(draft.key, error.message)));
  }

  /** Take a file out of the composer; a stored one is deleted (it was never sent). An upload
   * still going is not cancelled: the server may have the whole file already (it is checking
   * it) and store it anyway, so its copy is deleted once it answers. */
  removeDraft(key) {
    const draft = this.state.draft(key);
    if (!draft) return;
    if (draft.status === "ready") this.deleteUpload(draft.upload.id);
    this.update(() => {
      this.state.removeDraft(key);
      this.state.announcement = `${draft.name} removed`;
    });
    this.input.focus();
  }

  deleteUpload(id) {
    api(`/api/uploads/${id}/`, { method: "DELETE" }).catch(() => {
      // Left behind, an unsent upload is swept after a day.
    });
  }

  /** Why the composer's files cannot go yet, or "". */
  draftsWaiting() {
    const drafts = this.state.drafts;
    if (drafts.some((d) => d.status === "uploading"))
      return "Wait for the files to finish uploading.";
    if (drafts.some((d) => d.status === "failed")) {
      return "Remove the files that could not be attached before sending.";
    }
    if (drafts.some((d) => d.kind === "image"))
      return imageRefusal(this.state.model, config.uploads);
    return "";
  }

  stop() {
    const streaming = this.state.streaming;
    if (streaming?.id !== null && streaming?.id !== undefined) {
      this.socket.send({ type: "chat.stop", message_id: streaming.id });
    }
    this.input.focus(); // the Stop button is about to go away; typing goes on here
  }

  /** Approve or deny a tool call the answer waits on. */
  decideTool(message, callId, approve) {
    if (message.id === null) return;
    const frame = {
      type: "chat.tool_decision",
      conversation_id: this.state.conversationId,
      message_id: message.id,
      call_id: callId,
      approve,
    };
    if (!this.socket.send(frame)) {
      const notice = "Not connected to the server yet; try again in a moment.";
      this.update(() => (this.state.notice = { text: notice, retry: false }));
      return;
    }
    this.update(() => this.state.deciding(message, callId));
    this.input.focus(); // Approve and Deny are disabled, then gone; typing goes on here
  }

  /** What the settings panel changed, for a send or a regenerate; null (the panel open) when a
   * value is out of range: it stays with its field, and nothing is sent. */
  panelSettings() {
    if (!this.settings.validate()) {
      this.settings.open();
      this.settings.validate();
      return null;
    }
    return this.settings.changes();
  }

  /** A new answer to the same question, with whatever the settings panel changed meanwhile. */
  regenerate(message) {
    if (this.state.busy || message.id === null) return;
    const settings = this.panelSettings();
    if (settings === null) return;
    const requestId = newRequestId();
    const frame = { type: "chat.regenerate", request_id: requestId, message_id: message.id };
    if (Object.keys(settings).length) frame.settings = settings;
    if (!this.socket.send(frame)) {
      const notice = "Not connected to the server yet; try again in a moment.";
      this.update(() => (this.state.notice = { text: notice, retry: false }));
      return;
    }
    this.regenerated = { requestId, settings }; // the settings hold once its answer starts
    this.update(() => this.state.regenerating(message));
    this.input.focus(); // the Regenerate (or Retry) button goes away while the answer streams
  }

  /** Says so and answers true when text is over the server's limit for one message. */
  refusedAsTooLong(text) {
    if (byteLength(text) <= config.maxContentBytes) return false;
    const notice = `That message is too long (the limit is ${config.maxContentBytes} bytes).`;
    this.update(() => (this.state.notice = { text: notice, retry: false }));
    return true;
  }

  /** Send a new version of a question (with `files`, those of its files it keeps): it goes
   * beside the old one, with a new answer. */
  saveEdit(message, content, files = message.attachments) {
    const text = content.trim();
    // Blank text asks about the files it keeps alone, as a question sent with files may.
    if ((!text && !files.length) || this.state.busy || message.id === null) return;
    const dropped = files.length !== message.attachments.length;
    if (text === message.content && !dropped) {
      this.cancelEdit(message);
      return;
    }
    if (this.refusedAsTooLong(text)) return;
    // The new version is answered as a send would be: with what the settings panel changed.
    const settings = this.panelSettings();
    if (settings === null) return;
    const requestId = newRequestId();
    const frame = {
      type: "chat.edit",
      request_id: requestId,
      message_id: message.id,
      content: text,
    };
    if (dropped) frame.attachments = files.map((file) => file.id); // without: it keeps them all
    if (Object.keys(settings).length) frame.settings = settings;
    if (!this.socket.send(frame)) {
      const notice = "Not connected to the server yet; your edit was not sent.";
      this.update(() => (this.state.notice = { text: notice, retry: false }));
      return;
    }
    this.update(() => this.state.sending({ requestId, content: text, settings, edits: message }));
    this.messages.stickToBottom = true;
    this.input.focus();
  }

  cancelEdit(message) {
    this.editCancelled = message; // the keyboard goes back to its Edit button once drawn
    this.update(() => this.state.stopEditing());
  }

  /** Show the previous (-1) or next (+1) version of a message, and the branch below it. */
  switchVersion(message, step) {
    const target = this.state.siblingStep(message, step);
    if (target === null || this.state.busy) return;
    const frame = { type: "chat.switch", conversation_id: this.state.conversationId };
    if (!this.socket.send({ ...frame, message_id: target })) {
      const notice = "Not connected to the server yet; try again in a moment.";
      this.update(() => (this.state.notice = { text: notice, retry: false }));
      return;
    }
    this.switching = { target, step }; // the keyboard stays on the switcher once it is drawn
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 240)}px`;
  }

  // ---- keyboard ---------------------------------------------------------------------------

  bindKeys() {
    document.addEventListener("keydown", (event) => {
      if (event.defaultPrevented || event.isComposing) return;
      const command = (event.ctrlKey || event.metaKey) && event.shiftKey && !event.altKey;
      const key = event.key.toLowerCase();
      if (command && key === "o") {
        event.preventDefault();
        this.newChat();
      } else if (command && key === "s") {
        event.preventDefault();
        this.toggleSidebar();
      } else if (event.key === "Escape" && event.shiftKey) {
        event.preventDefault();
        this.input.focus();
      } else if (document.querySelector("dialog[open]")) {
        // A dialog handles its own keys (Escape closes it).
      } else if (event.key === "Escape") {
        if (document.body.classList.contains("drawer-open")) this.closeDrawer();
        else if (this.state.streaming) this.stop();
      } else if (event.key === "?" && !isTyping(event.target)) {
        event.preventDefault();
        $("shortcuts-dialog").showModal();
      }
    });
    $("shortcuts-button").addEventListener("click", () => $("shortcuts-dialog").showModal());
  }

  // ---- drawing ----------------------------------------------------------------------------

  /** A message's button taken away under the keyboard's focus (another tab asked, an answer
   * streams): the message box takes it rather than the page. */
  keepFocus(focused) {
    if (focused === null || focused === $("messages")) return;
    const active = document.activeElement;
    const gone = active === focused && (focused.disabled || !focused.checkVisibility());
    if (active === document.body || gone) this.input.focus();
  }

  render() {
    const state = this.state;
    const title = state.title || "New chat";
    $("conversation-title").textContent = title;
    $("conversation-title").title = title; // the whole of a title cut short
    document.title = `${title} · Llama team chat`;
    this.renderModel(state.model);
    this.renderSystemPrompt(state.systemPrompt);
    // The keyboard's place in the messages, before they are drawn anew.
    const focused = $("messages").contains(document.activeElement) ? document.activeElement : null;
    // A search hit, or a version switched to, is drawn now however far up it is.
    const reach = state.message(state.landing) || state.message(this.switching?.target);
    const due = this.messages.render(state.messages, {
      busy: state.busy,
      editing: state.editing,
      reach,
    });
    // A streaming answer's newer text waits its turn; drawn then, even if no frame comes.
    clearTimeout(this.renderTimer);
    if (due) this.renderTimer = setTimeout(() => this.update(), due);
    this.land();
    const switched = this.switching && state.message(this.switching.target);
    if (switched && this.messages.focusSwitcher(switched, this.switching.step)) {
      this.switching = null;
      // The focused arrow's name stays the same: say which version is shown now.
      const { siblingIds } = switched;
      this.announce(`Version ${siblingIds.indexOf(switched.id) + 1} of ${siblingIds.length}`);
    }
    if (this.editCancelled) {
      // A button disabled meanwhile (an answer streams) cannot take it: the message box does.
      if (!this.messages.focusEditButton(this.editCancelled)) this.input.focus();
      this.editCancelled = null;
    }
    this.keepFocus(focused);
    this.renderComposer();
    this.renderNotice(state.notice);
    setText($("chat-announcer"), state.announcement);
    const connection = CONNECTION_TEXT[state.connection.state];
    const status = $("connection-status");
    setText(status, connection ? connection(state.connection.delay) : "");
    status.hidden = !connection;
    $("prompt-row").hidden = state.conversationId !== null;
    this.renderTemporary(state);
    const exportLink = $("export-link");
    exportLink.hidden = state.conversationId === null || state.temporary; // never exported
    const shareLink = $("share-link");
    shareLink.hidden = state.conversationId === null || state.temporary || this.readOnly;
    this.renderTeamLeft();
    $("former-team-notice").hidden = !this.formerTeam || this.teamLeft !== null; // said above
    // Edit, Regenerate and Retry would only be refused there: read only.
    $("messages").classList.toggle("read-only", this.readOnly);
    if (state.conversationId !== null) {
      exportLink.href = `/api/conversations/${state.conversationId}/export?format=md`;
      shareLink.href = `/c/${state.conversationId}/share/`;
    }
  }

  /** Whether the conversation shown is of a team the user is no longer in: read only. */
  get formerTeam() {
    return this.state.teamId !== null && !this.teamIds.has(this.state.teamId);
  }

  /** Whether nothing more can be asked here: the conversation's team, or the page's, is left. */
  get readOnly() {
    return this.formerTeam || this.teamLeft !== null;
  }

  renderTeamLeft() {
    $("team-left-notice").hidden = this.teamLeft === null;
    if (this.teamLeft === null) return;
    const name = this.teamLeft.current?.name;
    $("team-left-go").textContent = name ? `Go to ${name}` : "Go to your current team";
    $("new-chat").title = name ? `New chat in ${name}` : "New chat in your current team";
  }

  /** The toggle on a new chat, and the notice while the chat is temporary. */
  renderTemporary(state) {
    const toggle = $("temporary-toggle");
    toggle.hidden = state.conversationId !== null;
    toggle.disabled = this.readOnly || state.pending !== null;
    toggle.setAttribute("aria-pressed", String(state.temporary));
    $("temporary-notice").hidden = !state.temporary;
    // A temporary chat is not saved; where nothing can be sent, no chat is, and a blank chat
    // keeps only the notice that says so, not an invitation to ask.
    $("empty-state-saved").hidden = state.temporary || this.readOnly;
    $("empty-state").classList.toggle("is-closed", this.readOnly);
    document.body.classList.toggle("is-temporary", state.temporary);
  }

  /** Scroll to the message a search result named, once it is shown, and mark it. */
  land() {
    const message = this.state.message(this.state.landing);
    const element = message && this.messages.elementOf(message);
    if (!element) return;
    this.state.landing = null;
    this.messages.stickToBottom = false;
    for (const old of document.querySelectorAll(".message.is-landed")) {
      old.classList.remove("is-landed");
    }
    element.classList.add("is-landed");
    element.scrollIntoView({ block: "center" });
  }

  /** The header's picker shows the model the next answer uses, even one no longer offered. */
  renderModel(model) {
    if (!model) return;
    if (![...this.modelPicker.options].some((option) => option.value === model)) {
      this.modelPicker.append(new Option(model, model));
    }
    this.modelPicker.value = model;
  }

  renderComposer() {
    const state = this.state;
    const busy = state.busy;
    const focused = document.activeElement;
    // A button that disappears under the keyboard's focus hands it to the message box.
    if ((busy && focused === this.sendButton) || (!busy && focused === this.stopButton)) {
      this.input.focus();
    }
    this.sendButton.hidden = busy;
    this.stopButton.hidden = !busy;
    this.stopButton.disabled = state.streaming === null || state.streaming.id === null;
    const empty = this.input.value.trim() === "" && state.readyUploads.length === 0;
    this.input.disabled = this.readOnly; // nothing more is asked there (forbidden)
    this.input.placeholder = this.readOnly ? "Nothing more can be asked here" : this.askPlaceholder;
    $("composer-hint").hidden = this.readOnly; // how to send, where nothing can be
    this.attachButton.disabled = this.readOnly; // nor are files for it stored
    // Nor does a chat start there, with a suggestion, a prompt, a model or other settings.
    for (const starter of this.starters) starter.disabled = this.readOnly;
    this.promptPicker.disabled = this.readOnly;
    this.settings.setDisabled(this.readOnly);
    this.sendButton.disabled =
      !state.socketOpen || !state.loaded || empty || this.draftsWaiting() !== "" || this.readOnly;
    this.renderAttaching(state);
    this.kept.save(this.input.value, state.readyUploads, config.currentTeamId);
  }

  /** The tray of files, and whether this model takes images (the site's capability map). */
  renderAttaching(state) {
    const refusal = imageRefusal(state.model, config.uploads);
    this.tray.render(state.drafts, { imagesRefused: refusal !== "" });
    const blocking = refusal !== "" && state.drafts.some((d) => d.kind === "image");
    // Where nothing can be sent no file is attached either: images are no matter there.
    const noted = refusal !== "" && !this.readOnly;
    const note = $("attach-note");
    note.textContent = blocking
      ? "This model does not see images: remove them or choose another model."
      : refusal
        ? "This model does not see images: documents only."
        : "";
    note.title = refusal;
    note.hidden = !noted;
    note.classList.toggle("is-blocking", blocking);
    this.attachButton.setAttribute(
      "aria-label",
      noted ? "Attach documents (this model does not see images)" : "Attach files",
    );
    const accept = config.uploads.accept.split(",");
    const documents = accept.filter((suffix) => !IMAGE_SUFFIX.test(suffix));
    this.attachInput.accept = (refusal ? documents : accept).join(",");
  }

  /** The prompt the conversation started with, folded away above the messages. */
  renderSystemPrompt(prompt) {
    if (prompt === this.shownPrompt) return;
    this.shownPrompt = prompt;
    const details = $("system-prompt");
    $("system-prompt-text").textContent = prompt?.content || "";
    $("system-prompt-locked").hidden = !prompt?.locked;
    details.hidden = !prompt?.content;
    details.open = false;
  }

  renderNotice(notice) {
    const box = $("chat-notice");
    // Its Dismiss or Retry, gone under the keyboard's focus, hands it to the message box.
    if (notice === null && box.contains(document.activeElement)) this.input.focus();
    box.hidden = notice === null;
    if (notice === null) return;
    setText($("chat-notice-text"), notice.text);
    $("notice-retry").hidden = !notice.retry;
  }

  // ---- phone-width drawer -----------------------------------------------------------------

  bindDrawer() {
    $("open-sidebar").addEventListener("click", () => this.toggleSidebar());
    $("close-sidebar").addEventListener("click", () => this.closeDrawer());
    $("drawer-backdrop").addEventListener("click", () => this.closeDrawer());
    // Wider than a phone the sidebar is a column again: nothing stays inert behind it.
    phoneWidth.addEventListener("change", () => {
      if (!phoneWidth.matches) this.closeDrawer();
    });
  }

  /** The conversations: a drawer at phone width, a column that folds away on wider screens. */
  toggleSidebar() {
    if (phoneWidth.matches) {
      if (document.body.classList.contains("drawer-open")) this.closeDrawer();
      else this.openDrawer();
      return;
    }
    const collapsed = document.body.classList.toggle("sidebar-collapsed");
    $("open-sidebar").setAttribute("aria-expanded", String(!collapsed));
    if (collapsed && $("sidebar").contains(document.activeElement)) this.input.focus();
    if (!collapsed) $("new-chat").focus();
  }

  openDrawer() {
    document.body.classList.add("drawer-open");
    $("open-sidebar").setAttribute("aria-expanded", "true");
    $("drawer-backdrop").hidden = false;
    setBehindDrawerInert(true);
    $("new-chat").focus();
  }

  closeDrawer() {
    if (!document.body.classList.contains("drawer-open")) return;
    document.body.classList.remove("drawer-open");
    $("open-sidebar").setAttribute("aria-expanded", "false");
    $("drawer-backdrop").hidden = true;
    setBehindDrawerInert(false);
    $("open-sidebar").focus();
  }
}

new ChatPage().start();
