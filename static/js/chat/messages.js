// The message pane: one MessageView per message, streaming text rendered as it arrives.

import { copyWithFeedback } from "./clipboard.js";
import { h, iconButton } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const AVATAR_URL = document.querySelector("[data-avatar]")?.dataset.avatar || "";

const STATUS_LABELS = {
  stopped: "Stopped",
  interrupted: "Interrupted: the answer was cut off",
  error: "Failed",
};

function formatUsage(usage) {
  if (!usage) return "";
  const prompt = usage.prompt_tokens ?? 0;
  const completion = usage.completion_tokens ?? 0;
  return `${prompt.toLocaleString()} in · ${completion.toLocaleString()} out tokens`;
}

/** Wrap each rendered code block with a header: its language and a copy button. */
function decorateCodeBlocks(root) {
  for (const pre of root.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const language = code?.className.match(/\blanguage-(\S+)/)?.[1] || "text";
    const copy = iconButton("copy", "Copy", { className: "icon-text-button code-copy" });
    copy.setAttribute("aria-label", "Copy code");
    copy.addEventListener("click", () => copyWithFeedback(copy, code ? code.textContent : ""));
    const header = h(
      "div",
      { className: "code-header" },
      h("span", { className: "code-language", text: language }),
      copy,
    );
    const block = h("div", { className: "code-block" });
    pre.replaceWith(block);
    block.append(header, pre);
  }
}

export class MessageView {
  constructor(data, list) {
    this.list = list;
    this.id = data.id ?? null;
    this.role = data.role;
    this.content = data.content ?? "";
    this.status = data.status ?? "complete";
    this.seq = data.seq ?? 0;
    this.model = data.model ?? "";
    this.usage = data.usage ?? null;
    this.error = data.error ?? null;
    this.retrying = null;
    this.replacing = false; // a regenerate was asked for; a new message may take this one's place
    this.isLast = false;
    this.renderPending = false;
    this.element = this.role === "user" ? this.buildUser() : this.buildAssistant();
    this.update();
  }

  buildUser() {
    this.body = h("div", { className: "bubble" });
    return h("article", { className: "message message-user", "aria-label": "You said" }, this.body);
  }

  buildAssistant() {
    this.body = h("div", { className: "markdown" });
    this.typing = h(
      "div",
      { className: "typing", "aria-label": "Llama is thinking" },
      h("span"),
      h("span"),
      h("span"),
    );
    this.notice = h("div", { className: "message-notice" });
    this.meta = h("span", { className: "message-meta" });
    this.copyButton = iconButton("copy", "Copy", { className: "icon-text-button answer-copy" });
    this.copyButton.setAttribute("aria-label", "Copy answer");
    this.copyButton.addEventListener("click", () => copyWithFeedback(this.copyButton, this.content));
    this.regenerateButton = iconButton("retry", "Regenerate", {
      className: "icon-text-button regenerate",
    });
    this.regenerateButton.addEventListener("click", () => this.list.handlers.regenerate(this));
    this.retryButton = iconButton("retry", "Retry", { className: "icon-text-button retry" });
    this.retryButton.addEventListener("click", () => this.list.handlers.retry(this));
    const actions = h(
      "div",
      { className: "message-actions" },
      this.copyButton,
      this.regenerateButton,
      this.retryButton,
    );
    const footer = h("footer", { className: "message-footer" }, this.meta, actions);
    const avatar = h("img", { className: "avatar", alt: "", src: AVATAR_URL });
    const column = h("div", { className: "message-column" }, this.typing, this.body);
    column.append(this.notice, footer);
    return h(
      "article",
      { className: "message message-assistant", "aria-label": "Llama answered" },
      avatar,
      column,
    );
  }

  get isStreaming() {
    return this.status === "streaming" || this.status === "pending";
  }

  setId(id) {
    this.id = id;
    this.update();
  }

  /** A live delta; duplicates and replays (seq at or below what we hold) are dropped. */
  appendDelta(text, seq) {
    if (seq <= this.seq) return;
    this.seq = seq;
    this.replacing = false;
    this.content += text;
    if (!this.isStreaming) this.status = "streaming";
    this.retrying = null;
    this.scheduleRender();
  }

  /** Server truth (subscribe or reload): replaces what we had. */
  applyState({ content, status, seq, model, usage }) {
    this.content = content ?? this.content;
    this.status = status ?? this.status;
    if (seq !== undefined && seq !== null) this.seq = seq;
    if (model) this.model = model;
    if (usage !== undefined) this.usage = usage;
    // A failed or cut-off answer keeps saying why, whatever state arrives later.
    if (this.status !== "error" && this.status !== "interrupted") this.error = null;
    this.update();
  }

  finish({ status, usage }) {
    this.replacing = false;
    this.status = status || "complete";
    if (usage) this.usage = usage;
    this.retrying = null;
    this.update();
  }

  fail(error) {
    this.replacing = false;
    this.status = "error";
    this.error = error;
    this.retrying = null;
    this.update();
  }

  /** Forget the old text: a regenerated answer streams again from seq 1. */
  restart() {
    const { content, status, seq, usage, error } = this;
    this.previous = { content, status, seq, usage, error };
    this.content = "";
    this.seq = 0;
    this.status = "pending";
    this.usage = null;
    this.error = null;
    this.update();
  }

  /** The regenerate was refused: show the old answer again. */
  restore() {
    Object.assign(this, this.previous || {});
    this.replacing = false;
    this.update();
  }

  setRetrying(attempt, delay) {
    this.retrying = { attempt, delay };
    this.update();
  }

  scheduleRender() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      this.update();
    });
  }

  update() {
    const el = this.element;
    if (this.id !== null) el.dataset.messageId = this.id;
    el.dataset.status = this.status;
    el.classList.toggle("is-streaming", this.isStreaming);
    if (this.role === "user") {
      this.body.textContent = this.content;
    } else {
      this.renderAssistant();
    }
    this.list.afterRender();
  }

  renderAssistant() {
    const fragment = renderMarkdown(this.content);
    decorateCodeBlocks(fragment);
    this.body.replaceChildren(fragment);
    this.typing.hidden = !(this.isStreaming && this.content === "");
    this.renderNotice();
    this.meta.textContent = [this.model, formatUsage(this.usage), STATUS_LABELS[this.status]]
      .filter(Boolean)
      .join(" · ");
    this.copyButton.hidden = this.content === "";
    this.regenerateButton.hidden = !this.isLast || this.isStreaming || this.status === "error";
    this.retryButton.hidden = this.status !== "error";
  }

  renderNotice() {
    let text = "";
    let kind = "";
    if (this.status === "error") {
      text = this.error?.message || "The answer failed.";
      kind = "error";
    } else if (this.status === "interrupted" && this.error?.message) {
      text = this.error.message; // the server's words already say it was cut off, and why
      kind = "error";
    } else if (this.retrying && this.isStreaming) {
      const seconds = Math.max(1, Math.round(this.retrying.delay || 0));
      text = `Retrying… (attempt ${this.retrying.attempt}, in ${seconds}s)`;
      kind = "retrying";
    }
    this.notice.textContent = text;
    this.notice.hidden = text === "";
    this.notice.className = `message-notice ${kind}`;
    this.notice.setAttribute("role", kind === "error" ? "alert" : "status");
  }
}

export class MessageList {
  constructor(container, emptyState, handlers) {
    this.container = container;
    this.emptyState = emptyState;
    this.handlers = handlers;
    this.views = [];
    this.stickToBottom = true;
    container.addEventListener("scroll", () => {
      const gap = container.scrollHeight - container.scrollTop - container.clientHeight;
      this.stickToBottom = gap < 80;
    });
  }

  clear() {
    this.views = [];
    for (const el of this.container.querySelectorAll(".message")) el.remove();
    this.stickToBottom = true;
    this.refresh();
  }

  add(data) {
    const view = new MessageView(data, this);
    this.views.push(view);
    this.container.append(view.element);
    this.refresh();
    return view;
  }

  get(id) {
    return this.views.find((view) => view.id === id) || null;
  }

  remove(view) {
    this.views = this.views.filter((other) => other !== view);
    view.element.remove();
    this.refresh();
  }

  get streaming() {
    return this.views.find((view) => view.role !== "user" && view.isStreaming) || null;
  }

  get lastAssistant() {
    for (let i = this.views.length - 1; i >= 0; i -= 1) {
      if (this.views[i].role === "assistant") return this.views[i];
    }
    return null;
  }

  /** Re-derive list-wide state: which answer may be regenerated, whether to show the greeting. */
  refresh() {
    const last = this.lastAssistant;
    for (const view of this.views) {
      const isLast = view === last && this.views.at(-1) === view;
      if (view.isLast !== isLast) {
        view.isLast = isLast;
        if (view.role === "assistant") view.update();
      }
    }
    this.emptyState.hidden = this.views.length > 0;
    this.container.setAttribute("aria-busy", String(this.streaming !== null));
    this.afterRender();
  }

  afterRender() {
    if (this.stickToBottom) this.container.scrollTop = this.container.scrollHeight;
  }

  scrollToBottom() {
    this.stickToBottom = true;
    this.afterRender();
  }
}
