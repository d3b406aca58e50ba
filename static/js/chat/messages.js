// The message pane: one MessageView per message of the page's state, rendered from it.

import { attachmentList } from "./attachments.js";
import { copyWithFeedback } from "./clipboard.js";
import { h, icon, iconButton } from "./dom.js";
import { renderMarkdown, wrapTables } from "./markdown.js";
import { isStreaming } from "./state.js";

const AVATAR_URL = document.querySelector("[data-avatar]")?.dataset.avatar || "";
// Within this many pixels of the bottom the pane follows a growing answer.
const FOLLOW_GAP_PX = 80;
// A streaming answer's Markdown is drawn again only once the page has had this many times the
// last draw's time to itself: a long answer (30,000 characters, about 15 ms a draw) or one
// nested hundreds deep (half a second) would otherwise take most of the thread at every frame.
const STREAM_DRAW_SPACING = 3;
// A long conversation opens with its last messages drawn at once; the earlier ones are built
// off the page meanwhile, a task of at most this many milliseconds at a time, and put above
// them in one go (drawing 1,300 messages at once took the thread for a second or more, and
// adding them to the page a few at a time laid the whole pane out again each time).
const FIRST_DRAWN = 40;
const BUILD_SLICE_MS = 30;

const STATUS_LABELS = {
  stopped: "Stopped",
  interrupted: "Interrupted: the answer was cut off",
  error: "Failed",
  blocked: "Blocked",
};

// Llama Guard's categories (docs/safety.md), to name them in plain words.
const GUARD_CATEGORIES = {
  S1: "Violent Crimes",
  S2: "Non-Violent Crimes",
  S3: "Sex-Related Crimes",
  S4: "Child Sexual Exploitation",
  S5: "Defamation",
  S6: "Specialized Advice",
  S7: "Privacy",
  S8: "Intellectual Property",
  S9: "Indiscriminate Weapons",
  S10: "Hate",
  S11: "Suicide & Self-Harm",
  S12: "Sexual Content",
  S13: "Elections",
  S14: "Code Interpreter Abuse",
};

function categoryNames(codes) {
  const named = (codes || []).map((c) => (GUARD_CATEGORIES[c] ? `${c} ${GUARD_CATEGORIES[c]}` : c));
  return named.length ? named.join(", ") : "unsafe";
}

// What Llama Guard screens at each stage of the policy.
const SCREENED = { input: "question", output: "answer" };

/** What the page says about an answer's safety screening: [text, kind], or ["", ""]. */
function safetyNotice(message) {
  const safety = message.safety;
  if (message.status === "blocked") {
    if (!safety?.stages?.includes("output")) {
      // Withheld unscreened (failing closed): what Llama Guard flagged was the question.
      const question = safety?.flagged
        ? ` Llama Guard flagged the question as ${categoryNames(safety.categories)}.`
        : "";
      return [
        "This answer is withheld: your team's safety policy holds answers until Llama Guard" +
          ` has checked them, and Llama Guard could not be reached.${question}`,
        "blocked",
      ];
    }
    return [
      "This answer was blocked by your team's safety policy: Llama Guard flagged it as" +
        ` ${categoryNames(safety.categories)}. Your team's admins can review it.`,
      "blocked",
    ];
  }
  if (message.status === "error" && safety?.flagged && safety.stages.includes("input")) {
    return [
      "Your team's safety policy blocked this question: Llama Guard flagged it as" +
        ` ${categoryNames(safety.categories)}. It was not sent to the model.`,
      "blocked",
    ];
  }
  if (message.status === "error" || !safety) return ["", ""];
  if (safety.flagged) {
    const what = safety.stages.includes("output") ? "answer" : "question";
    // What Llama Guard could not check stays said (fail_open), flagged or not.
    const missed = (safety.unscreened || []).map((stage) => `the ${SCREENED[stage] ?? stage}`);
    const unscreened = missed.length
      ? ` Llama Guard could not be reached to screen ${missed.join(" and ")} in full.`
      : "";
    return [
      `Llama Guard flagged this ${what} as ${categoryNames(safety.categories)};` +
        ` your team's admins can review it.${unscreened}`,
      "flagged",
    ];
  }
  if (safety.unscreened?.length) {
    return ["Not screened for safety: Llama Guard could not be reached.", "unscreened"];
  }
  return ["", ""];
}

function formatUsage(usage, status) {
  if (!usage) return "";
  const completion = (usage.completion_tokens ?? 0).toLocaleString();
  // A stopped answer's count comes from its stream; the prompt's is not reported.
  if (status === "stopped" || (status === "blocked" && !usage.prompt_tokens))
    return `${completion} out tokens`;
  return `${(usage.prompt_tokens ?? 0).toLocaleString()} in · ${completion} out tokens`;
}

/** Wrap each rendered code block with a header: its language and a copy button. */
function decorateCodeBlocks(root, announce) {
  for (const pre of root.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const language = code?.className.match(/\blanguage-(\S+)/)?.[1] || "text";
    const copy = iconButton("copy", "Copy", { className: "icon-text-button code-copy" });
    copy.setAttribute("aria-label", "Copy code");
    copy.addEventListener("click", () =>
      copyWithFeedback(copy, code ? code.textContent : "", announce),
    );
    const header = h(
      "div",
      { className: "code-header" },
      h("span", { className: "code-language", text: language }),
      copy,
    );
    const block = h("div", { className: "code-block" });
    // Long lines scroll sideways inside the block: keyboards reach it, screen readers name it.
    pre.tabIndex = 0;
    pre.setAttribute("role", "group");
    pre.setAttribute("aria-label", `Code (${language})`);
    pre.replaceWith(block);
    block.append(header, pre);
  }
}

/**
 * An answer asked for JSON: the text as JSON, pretty-printed, in a code block (as text,
 * never as HTML or markdown); an answer that does not parse is shown exactly as it came.
 */
function jsonFragment(content) {
  let text = content;
  try {
    JSON.parse(content);
    text = indentedJson(content);
  } catch {
    // Not JSON (the note under the answer says so), or nested too deeply to indent: the text
    // is shown as it came.
  }
  const fragment = document.createDocumentFragment();
  fragment.append(
    h("pre", { className: "json-answer" }, h("code", { className: "language-json", text })),
  );
  return fragment;
}

const JSON_SPACE = " \t\n\r";
// Deeper, each line would start with more than 128 spaces: a long answer nested a few
// thousand deep would be indented into gigabytes.
const MAX_INDENT_DEPTH = 64;

/**
 * Valid JSON text indented two spaces a level, as JSON.stringify(value, null, 2) lays it out,
 * each string and number kept as written: read into JavaScript and written back,
 * 12345678901234567890 would become 12345678901234567000 and 1.0 would become 1.
 */
function indentedJson(text) {
  const parts = [];
  let depth = 0;
  const newline = () => `\n${"  ".repeat(depth)}`;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      parts.push(text.slice(i, end + 1));
      i = end;
    } else if (c === "{" || c === "[") {
      let next = i + 1;
      while (JSON_SPACE.includes(text[next])) next++;
      if (text[next] === (c === "{" ? "}" : "]")) {
        parts.push(c + text[next]); // an empty object or list stays on its line
        i = next;
      } else {
        depth++;
        if (depth > MAX_INDENT_DEPTH) throw new RangeError("nested too deeply to indent");
        parts.push(c + newline());
      }
    } else if (c === "}" || c === "]") {
      depth--;
      parts.push(newline() + c);
    } else if (c === ",") {
      parts.push(`,${newline()}`);
    } else if (c === ":") {
      parts.push(": ");
    } else if (!JSON_SPACE.includes(c)) {
      parts.push(c);
    }
  }
  return parts.join("");
}

/** The note under a JSON answer that does not parse or breaks its schema, or "". */
function formatNotice(message) {
  const format = message.format;
  if (format?.valid !== false) return "";
  const expected = format.type === "json_schema" && format.name ? ` (schema ${format.name})` : "";
  return `This answer is not the JSON that was asked for${expected}: ${format.error || "it does not parse."}`;
}

function isBlank(node) {
  return node.nodeType === Node.TEXT_NODE && node.textContent.trim() === "";
}

/** The streaming caret goes after the last word, inside the innermost last element. */
function appendCaret(root) {
  let parent = root;
  for (;;) {
    let last = parent.lastChild;
    while (last && isBlank(last)) last = last.previousSibling;
    if (!last || last.nodeType !== Node.ELEMENT_NODE || last.tagName === "A") break;
    if (last.classList.contains("code-block")) {
      parent = last.querySelector("code") || last;
      break;
    }
    parent = last;
  }
  parent.append(h("span", { className: "caret", "aria-hidden": "true" }));
}

const TOOL_STATUS = {
  awaiting_approval: "waits for your approval",
  running: "running…",
};

/** The model's argument text, indented when it is JSON (shown as text either way). */
function formattedArguments(text) {
  try {
    return JSON.stringify(JSON.parse(text || "{}"), null, 2);
  } catch {
    return text;
  }
}

/**
 * One tool call: a collapsible block with its name, arguments, result (plain text: a tool's
 * output is untrusted) and time taken; while it waits for approval, Approve and Deny.
 */
class ToolCallView {
  constructor(call, onDecide) {
    this.id = call.id;
    this.summary = h("summary", { className: "tool-call-summary" });
    this.name = h("code", { className: "tool-call-name" });
    this.state = h("span", { className: "tool-call-state" });
    this.summary.append(h("span", { text: "Tool " }), this.name, " ", this.state);
    this.arguments = h("pre", { className: "tool-call-arguments", tabindex: "0" });
    this.arguments.setAttribute("aria-label", "Arguments");
    this.result = h("pre", { className: "tool-call-result", tabindex: "0" });
    this.resultLabel = h("p", { className: "tool-call-label" });
    this.approve = h("button", { type: "button", className: "primary", text: "Approve" });
    this.deny = h("button", { type: "button", text: "Deny" });
    this.approve.addEventListener("click", () => onDecide(this.id, true));
    this.deny.addEventListener("click", () => onDecide(this.id, false));
    this.question = h(
      "div",
      { className: "tool-call-approval", role: "group" },
      h("p", { text: "This tool can change things. Run it with these arguments?" }),
      h("div", { className: "tool-call-buttons" }, this.deny, this.approve),
    );
    this.element = h(
      "details",
      { className: "tool-call" },
      this.summary,
      h("p", { className: "tool-call-label", text: "Arguments" }),
      this.arguments,
      this.question,
      this.resultLabel,
      this.result,
    );
    this.shown = null;
  }

  render(call, deciding) {
    const stamp = `${call.status}:${call.content}:${deciding}`;
    if (this.shown === stamp) return;
    const waiting = call.status === "awaiting_approval";
    const done = call.status === "done";
    if (waiting && this.shown === null) this.element.open = true; // the user must see it
    this.shown = stamp;
    this.element.dataset.status = call.status;
    this.element.classList.toggle("is-error", done && call.is_error);
    this.name.textContent = call.name;
    let state = TOOL_STATUS[call.status] || "";
    if (done) {
      const seconds = call.elapsed === null ? "" : ` in ${Number(call.elapsed).toFixed(1)} s`;
      state = `${call.is_error ? "failed" : "done"}${seconds}`;
    }
    this.state.textContent = state;
    this.arguments.textContent = formattedArguments(call.arguments);
    this.question.hidden = !waiting;
    this.approve.disabled = deciding;
    this.deny.disabled = deciding;
    this.resultLabel.textContent = call.is_error ? "Error" : "Result";
    this.resultLabel.hidden = !done;
    this.result.hidden = !done;
    this.result.textContent = done ? call.content || "" : "";
  }
}

/** `‹ 2/3 ›`: the versions of a message (edited questions, regenerated answers). */
class VersionSwitcher {
  constructor(onStep) {
    this.previous = h("button", { type: "button", className: "version-step", text: "‹" });
    this.next = h("button", { type: "button", className: "version-step", text: "›" });
    this.previous.setAttribute("aria-label", "Previous version");
    this.next.setAttribute("aria-label", "Next version");
    this.position = h("span", { className: "version-position" });
    this.previous.addEventListener("click", () => onStep(-1));
    this.next.addEventListener("click", () => onStep(1));
    this.element = h(
      "div",
      { className: "version-switcher", role: "group" },
      this.previous,
      this.position,
      this.next,
    );
  }

  /** Keep the keyboard on the switcher: the arrow just used, or the other at an end. */
  focus(step) {
    const [used, other] = step < 0 ? [this.previous, this.next] : [this.next, this.previous];
    (used.disabled ? other : used).focus();
  }

  render(message, busy) {
    const count = message.siblingIds.length;
    const index = message.siblingIds.indexOf(message.id);
    this.element.hidden = count < 2 || index < 0;
    if (this.element.hidden) return;
    this.position.textContent = `${index + 1}/${count}`;
    this.element.setAttribute("aria-label", `Version ${index + 1} of ${count}`);
    this.previous.disabled = busy || index === 0;
    this.next.disabled = busy || index === count - 1;
  }
}

export class MessageView {
  constructor(message, handlers) {
    this.key = message.key;
    this.role = message.role;
    this.handlers = handlers;
    this.rendered = null; // the rev and place last drawn
    this.element = this.role === "user" ? this.buildUser() : this.buildAssistant(message);
  }

  buildUser() {
    this.body = h("div", { className: "bubble", dir: "auto" });
    this.files = h("div", { className: "message-files" });
    this.shownFiles = null; // the attachments last drawn
    this.redacted = h("p", { className: "message-redactions" });
    this.editButton = iconButton("edit", "Edit", { className: "icon-text-button edit" });
    this.editButton.setAttribute("aria-label", "Edit this question");
    this.editButton.addEventListener("click", () => this.handlers.edit(this.message));
    this.switcher = new VersionSwitcher((step) => this.handlers.switchVersion(this.message, step));
    const actions = h("div", { className: "message-actions" }, this.editButton);
    this.footer = h(
      "footer",
      { className: "message-footer user-footer" },
      this.switcher.element,
      actions,
    );
    this.editor = this.buildEditor();
    return h(
      "article",
      { className: "message message-user", "aria-label": "You said" },
      this.files,
      this.body,
      this.editor,
      this.redacted,
      this.footer,
    );
  }

  /** The question, editable in place: Enter (or Send) sends the new version, Escape cancels. */
  buildEditor() {
    this.editInput = h("textarea", { className: "edit-input", rows: "3", dir: "auto" });
    this.editInput.setAttribute("aria-label", "Edit your question");
    // The question's files, which the new version keeps unless taken out here.
    this.editFiles = h("ul", { className: "draft-tray", "aria-label": "Files this version keeps" });
    this.keptFiles = [];
    const send = h("button", { type: "submit", className: "primary", text: "Send" });
    const cancel = h("button", { type: "button", text: "Cancel" });
    cancel.addEventListener("click", () => this.handlers.cancelEdit(this.message));
    this.editInput.addEventListener("input", () => this.fitEditor());
    this.editInput.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.handlers.cancelEdit(this.message);
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.handlers.saveEdit(this.message, this.editInput.value, this.keptFiles);
      }
    });
    const form = h(
      "form",
      { className: "message-editor" },
      this.editFiles,
      this.editInput,
      h("div", { className: "editor-buttons" }, cancel, send),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.handlers.saveEdit(this.message, this.editInput.value, this.keptFiles);
    });
    return form;
  }

  /** The edit box as tall as its text, up to half the window (then it scrolls). Once the user
   * drags its corner, that height stays: the box grows past it only by the room text added
   * since needs, and never shrinks below it. opening: a new edit, fitted afresh. */
  fitEditor({ opening = false } = {}) {
    const input = this.editInput;
    if (opening) this.userHeight = null;
    else if (input.style.height !== this.fittedHeight) {
      // Dragged since the last fit (the handle sets the inline height).
      this.userHeight = { height: input.offsetHeight, needed: this.fittedNeeds };
    }
    const needed = this.editorNeeds();
    this.fittedNeeds = needed;
    const user = this.userHeight;
    const height = user
      ? user.height + Math.max(0, needed - Math.max(user.height, user.needed))
      : needed;
    input.style.height = `${height}px`;
    this.fittedHeight = input.style.height;
  }

  /** The height the edit box's text needs, up to half the window. */
  editorNeeds() {
    const input = this.editInput;
    const height = input.style.height;
    input.style.height = "auto";
    const borders = input.offsetHeight - input.clientHeight;
    const needed = Math.min(input.scrollHeight + borders, window.innerHeight / 2);
    input.style.height = height;
    return needed;
  }

  /** The files the edited version keeps, each with a button that takes it out. */
  renderKeptFiles() {
    const items = this.keptFiles.map((file) => {
      const remove = h(
        "button",
        { type: "button", className: "draft-remove", "aria-label": `Remove ${file.name}` },
        icon("close"),
      );
      remove.addEventListener("click", () => {
        this.keptFiles = this.keptFiles.filter((kept) => kept !== file);
        this.renderKeptFiles();
        this.handlers.announce(`${file.name} removed`);
        this.editInput.focus(); // the button is gone
      });
      const name = h("span", { className: "draft-name", text: file.name, title: file.name });
      return h(
        "li",
        { className: "draft", dataset: { kind: file.kind, status: "ready" } },
        h("span", { className: "draft-preview" }, icon(file.kind === "image" ? "image" : "file")),
        h("span", { className: "draft-text" }, name),
        remove,
      );
    });
    this.editFiles.replaceChildren(...items);
    this.editFiles.hidden = items.length === 0;
  }

  renderUser(message, { busy, editing }) {
    const wasEditing = !this.editor.hidden;
    this.editor.hidden = !editing;
    this.body.hidden = editing;
    this.footer.hidden = editing;
    if (editing && !wasEditing) {
      this.editInput.value = message.content;
      this.keptFiles = [...message.attachments];
      this.renderKeptFiles();
      this.fitEditor({ opening: true });
      this.editInput.focus();
      this.editInput.setSelectionRange(message.content.length, message.content.length);
    }
    this.editButton.hidden = message.id === null;
    this.editButton.disabled = busy;
    this.switcher.render(message, busy);
    if (editing) return;
    this.body.textContent = message.content;
    const redactions = message.redactions || [];
    this.redacted.textContent = redactions.length
      ? `Sent to the model with ${redactions
          .map((r) => `${r.placeholder} in place of the ${r.label}`)
          .join(", ")} (your team's data policy).`
      : "";
    this.redacted.hidden = redactions.length === 0;
    this.body.hidden = message.content === "" && message.attachments.length > 0;
    this.footer.hidden = message.id === null;
    if (message.attachments === this.shownFiles) return;
    this.shownFiles = message.attachments;
    const files = message.attachments.length
      ? [attachmentList(message.attachments, { onView: this.handlers.viewImage })]
      : [];
    this.files.replaceChildren(...files);
    this.files.hidden = files.length === 0;
  }

  buildAssistant(message) {
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
    this.copyButton.addEventListener("click", () =>
      copyWithFeedback(this.copyButton, this.message.content, this.handlers.announce),
    );
    this.regenerateButton = iconButton("retry", "Regenerate", {
      className: "icon-text-button regenerate",
    });
    this.regenerateButton.addEventListener("click", () => this.handlers.regenerate(this.message));
    this.retryButton = iconButton("retry", "Retry", { className: "icon-text-button retry" });
    this.retryButton.addEventListener("click", () => this.handlers.regenerate(this.message));
    this.switcher = new VersionSwitcher((step) => this.handlers.switchVersion(this.message, step));
    const actions = h(
      "div",
      { className: "message-actions" },
      this.copyButton,
      this.regenerateButton,
      this.retryButton,
    );
    const footer = h(
      "footer",
      { className: "message-footer" },
      this.switcher.element,
      this.meta,
      actions,
    );
    const avatar = h("img", { className: "avatar", alt: "", src: AVATAR_URL });
    this.tools = h("div", { className: "tool-calls" });
    this.toolViews = new Map(); // call id -> ToolCallView
    const column = h("div", { className: "message-column" }, this.tools, this.typing, this.body);
    column.append(this.notice, footer);
    this.message = message;
    return h(
      "article",
      { className: "message message-assistant", "aria-label": "Llama answered" },
      avatar,
      column,
    );
  }

  /**
   * Draw the message; a no-op when neither it nor its place changed since the last draw.
   * Returns 0, or the milliseconds after which a streaming answer's text is due to be drawn.
   */
  render(message, { isLast, busy, editing = false }) {
    const stamp = `${message.rev}:${isLast}:${busy}:${message.id}:${editing}`;
    if (this.rendered === stamp) return 0;
    this.rendered = stamp;
    this.message = message;
    const el = this.element;
    if (message.id !== null) el.dataset.messageId = message.id;
    el.dataset.status = message.status;
    el.classList.toggle("is-streaming", isStreaming(message));
    if (this.role === "user") {
      this.renderUser(message, { busy, editing });
      return 0;
    }
    const due = this.renderAssistant(message, { isLast, busy });
    if (due) this.rendered = null; // drawn again then
    return due;
  }

  /**
   * The answer's text, drawn again only when it changed; while it streams, not before its last
   * draw's spacing has passed: then it returns the milliseconds until it may.
   */
  renderBody(message, streaming) {
    const asJson = Boolean(message.format) && !streaming && message.content !== "";
    const shown = this.shownBody;
    if (
      shown?.content === message.content &&
      shown.streaming === streaming &&
      shown.asJson === asJson
    )
      return 0;
    const due = streaming && shown ? shown.nextAt - performance.now() : 0;
    if (due > 0) return Math.ceil(due);
    const start = performance.now();
    const fragment = asJson
      ? jsonFragment(message.content)
      : renderMarkdown(message.content, () => this.recolour());
    decorateCodeBlocks(fragment, this.handlers.announce);
    wrapTables(fragment);
    if (streaming && message.content !== "") appendCaret(fragment);
    this.body.replaceChildren(fragment);
    // Laid out now, so the time counts it (a long list takes longer to lay out than to parse);
    // the pane reads its height next to follow the answer in any case.
    if (streaming) this.body.getBoundingClientRect();
    const end = performance.now();
    const nextAt = end + STREAM_DRAW_SPACING * (end - start);
    this.shownBody = { content: message.content, streaming, asJson, nextAt };
    return 0;
  }

  /** highlight.js arrived for code this answer showed plain: draw the answer again. */
  recolour() {
    this.shownBody = null;
    this.rendered = null;
    this.handlers.redraw();
  }

  renderAssistant(message, { isLast, busy }) {
    const streaming = isStreaming(message);
    const due = this.renderBody(message, streaming);
    this.renderTools(message);
    const waiting = message.toolCalls.some((c) => c.status !== "done");
    this.typing.hidden = !(streaming && message.content === "" && !waiting);
    this.renderNotice(message, streaming);
    this.meta.textContent = [
      message.model,
      formatUsage(message.usage, message.status),
      STATUS_LABELS[message.status],
    ]
      .filter(Boolean)
      .join(" · ");
    this.copyButton.hidden = message.content === "";
    this.regenerateButton.hidden = !isLast || busy || message.status === "error";
    this.switcher.render(message, busy);
    // An error that cannot succeed on a second try (a refused key, a bad setting) has no Retry.
    this.retryButton.hidden = message.status !== "error" || message.error?.retryable === false;
    return due;
  }

  renderTools(message) {
    const ids = new Set(message.toolCalls.map((c) => c.id));
    for (const [id, view] of this.toolViews) {
      if (!ids.has(id)) {
        view.element.remove();
        this.toolViews.delete(id);
      }
    }
    const decide = (callId, approve) => this.handlers.decideTool(this.message, callId, approve);
    for (const call of message.toolCalls) {
      let view = this.toolViews.get(call.id);
      if (!view) {
        view = new ToolCallView(call, decide);
        this.toolViews.set(call.id, view);
      }
      view.render(call, message.deciding.has(call.id));
      this.tools.append(view.element); // in the calls' order
    }
    this.tools.hidden = message.toolCalls.length === 0;
  }

  renderNotice(message, streaming) {
    let text = "";
    let kind = "";
    const [safetyText, safetyKind] = streaming ? ["", ""] : safetyNotice(message);
    if (message.status === "error" && message.error?.message) {
      text = message.error.message; // a blocked question's words name the policy already
      kind = message.error.code === "safety_blocked" ? "blocked" : "error";
    } else if (safetyText) {
      [text, kind] = [safetyText, safetyKind];
    } else if (message.status === "error") {
      text = "The answer failed.";
      kind = "error";
    } else if (
      (message.status === "interrupted" || message.status === "stopped") &&
      message.error?.message
    ) {
      // The server's words say why it was cut off (a restart, the owner left the team).
      text = message.error.message;
      kind = "error";
    } else if (
      message.status === "stopped" &&
      message.content === "" &&
      message.toolCalls.length === 0
    ) {
      text = "Stopped before answering."; // else an empty bubble that says nothing
      kind = "stopped";
    } else if (!streaming && message.status === "complete" && message.finishReason === "length") {
      text =
        "The answer reached its length limit (Max tokens) and stops here: ask it to go on, or" +
        " raise Max tokens in this chat's settings and regenerate it.";
      kind = "format";
    } else if (!streaming && formatNotice(message)) {
      text = formatNotice(message);
      kind = "format";
    } else if (message.retrying && streaming) {
      const seconds = Math.max(1, Math.round(message.retrying.delay || 0));
      text = `Retrying… (attempt ${message.retrying.attempt}, in ${seconds}s)`;
      kind = "retrying";
    }
    this.notice.replaceChildren(text);
    if (kind === "error" && message.error?.help_url?.startsWith("/")) {
      const link = h("a", { href: message.error.help_url, text: "Open the provider settings" });
      this.notice.append(" ", link);
    }
    this.notice.hidden = text === "";
    this.notice.className = `message-notice ${kind}`;
  }
}

/** The scrolling pane of messages: follows a growing answer unless the reader scrolled up. */
export class MessageList {
  constructor({ container, emptyState, jumpButton, handlers }) {
    this.container = container;
    this.emptyState = emptyState;
    this.jumpButton = jumpButton;
    this.handlers = handlers;
    this.views = new Map(); // message key -> MessageView
    this.undrawn = 0; // how many of the first messages are not in the page yet
    this.built = new Map(); // message key -> MessageView of those, built off the page
    this.toBuild = null; // {messages, busy, editing, next}: those as last rendered, the next due
    this.buildTimer = null; // the next slice of building them, due in a task of its own
    this.stickToBottom = true;
    this.busy = false;
    container.addEventListener("scroll", () => {
      const gap = container.scrollHeight - container.scrollTop - container.clientHeight;
      this.stickToBottom = gap < FOLLOW_GAP_PX;
      this.showJump();
    });
    // A taller message box (lines typed, files attached) makes the pane shorter: a reader
    // at the bottom stays there, rather than the last answer's end slipping under the box.
    new ResizeObserver(() => {
      if (this.stickToBottom) container.scrollTop = container.scrollHeight;
    }).observe(container);
    jumpButton.addEventListener("click", () => {
      this.scrollToBottom();
      this.handlers.jumped();
    });
  }

  /**
   * Make the pane show exactly these messages, in this order (the first ones of a long list
   * freshly opened are built off the page and come in one later render, down to `reach`, a
   * message that must be shown now, with everything below it).
   * Returns 0, or the milliseconds after which a streaming answer's newer text is due: render
   * again then.
   */
  render(messages, { busy, editing = null, reach = null }) {
    let due = 0;
    this.busy = busy;
    const shown = this.drawnPart(messages, reach);
    // Messages drawn above the first one shown keep it where the reader sees it.
    const anchor = shown.length > this.views.size ? this.firstSlot() : null;
    const anchorTop = anchor && !this.stickToBottom ? anchor.getBoundingClientRect().top : null;
    const keys = new Set(shown.map((m) => m.key));
    for (const [key, view] of this.views) {
      if (!keys.has(key)) {
        view.element.remove();
        this.views.delete(key);
      }
    }
    const last = messages.at(-1);
    let previous = null;
    for (const message of shown) {
      let view = this.views.get(message.key);
      if (!view) {
        view = this.built.get(message.key) ?? new MessageView(message, this.handlers);
        this.built.delete(message.key);
        this.views.set(message.key, view);
      }
      const wait = view.render(message, {
        isLast: message === last && message.role === "assistant",
        busy,
        editing: message.key === editing,
      });
      if (wait) due = due ? Math.min(due, wait) : wait;
      // Keep DOM order equal to state order, moving only what is out of place.
      const expected = previous ? previous.element.nextElementSibling : this.firstSlot();
      if (view.element !== expected) {
        if (previous) previous.element.after(view.element);
        else if (expected) expected.before(view.element);
        else this.container.append(view.element);
      }
      previous = view;
    }
    this.emptyState.hidden = messages.length > 0;
    if (this.stickToBottom) this.container.scrollTop = this.container.scrollHeight;
    else if (anchorTop !== null && anchor.isConnected) {
      this.container.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
    }
    this.showJump();
    this.buildEarlier(messages.slice(0, this.undrawn), { busy, editing });
    return due;
  }

  /** The messages to draw: all, or a list freshly opened but for its first `undrawn`. */
  drawnPart(messages, reach) {
    const fresh = !messages.some((m) => this.views.has(m.key));
    if (fresh) this.undrawn = messages.length - FIRST_DRAWN;
    let from = Math.max(0, Math.min(this.undrawn, messages.length - FIRST_DRAWN));
    const reached = reach ? messages.indexOf(reach) : -1;
    if (reached >= 0 && reached < from) from = reached;
    this.undrawn = from;
    return from ? messages.slice(from) : messages;
  }

  /**
   * Build the views of the messages not in the page yet, off it, a slice a task (Markdown and
   * elements, nothing laid out); once all are built, the page renders them into place at once.
   */
  buildEarlier(messages, options) {
    const keys = new Set(messages.map((m) => m.key));
    for (const key of this.built.keys()) if (!keys.has(key)) this.built.delete(key);
    this.toBuild = messages.length ? { messages, ...options, next: 0 } : null;
    if (this.toBuild && this.buildTimer === null) {
      this.buildTimer = setTimeout(() => this.buildSlice());
    }
  }

  buildSlice() {
    this.buildTimer = null;
    const build = this.toBuild;
    if (!build) return;
    const end = performance.now() + BUILD_SLICE_MS;
    while (build.next < build.messages.length && performance.now() < end) {
      const message = build.messages[build.next++];
      let view = this.built.get(message.key);
      if (!view) {
        view = new MessageView(message, this.handlers);
        this.built.set(message.key, view);
      }
      view.render(message, {
        isLast: false,
        busy: build.busy,
        editing: message.key === build.editing,
      });
    }
    if (build.next < build.messages.length) {
      this.buildTimer = setTimeout(() => this.buildSlice());
      return;
    }
    this.toBuild = null;
    this.undrawn = 0;
    this.handlers.redraw();
  }

  firstSlot() {
    return this.container.querySelector(".message");
  }

  /** "Jump to latest" while an answer grows below the part the reader scrolled up to. */
  showJump() {
    this.jumpButton.hidden = this.stickToBottom || !this.busy;
  }

  /** Focus the version switcher of a message just switched to (its view is a new one). */
  focusSwitcher(message, step) {
    const view = this.views.get(message.key);
    if (!view?.switcher || view.switcher.element.hidden) return false;
    view.switcher.focus(step);
    return true;
  }

  /** Focus a question's Edit button (its editor just closed); false when it cannot. */
  focusEditButton(message) {
    const button = this.views.get(message.key)?.editButton;
    button?.focus();
    return button !== undefined && document.activeElement === button;
  }

  elementOf(message) {
    return this.views.get(message.key)?.element ?? null;
  }

  scrollToBottom() {
    this.stickToBottom = true;
    this.container.scrollTop = this.container.scrollHeight;
    this.showJump();
  }
}
