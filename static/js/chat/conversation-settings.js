// The chat pane's settings popover: model, temperature, max tokens and top_p for one conversation.

import { api } from "./api.js";

const NAMES = ["model", "temperature", "max_tokens", "top_p"];

export class ConversationSettings {
  constructor({ toggle, panel, error }) {
    this.toggle = toggle;
    this.panel = panel;
    this.error = error;
    this.fields = Object.fromEntries(NAMES.map((name) => [name, panel.elements[name]]));
    this.base = null; // the conversation's (or, for a new chat, the user's) settings
    this.generation = 0; // a newer load wins over a slower older one
    toggle.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    panel.addEventListener("submit", (event) => {
      event.preventDefault();
      this.close();
    });
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.close();
      }
    });
    panel.addEventListener("input", () => this.clearError());
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  open() {
    this.panel.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.fields.model.focus();
  }

  close() {
    if (!this.isOpen) return;
    this.panel.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    this.toggle.focus();
  }

  /** The team's models for the picker (once per page). */
  async loadModels() {
    const data = await api("/api/models/");
    const select = this.fields.model;
    select.replaceChildren(...data.models.map((model) => new Option(model.id, model.id)));
  }

  /** Prefill from a conversation's settings, or (null) from the user's effective defaults. */
  async show(settings) {
    const generation = ++this.generation;
    this.base = null;
    this.clearError();
    try {
      await (this.models ??= this.loadModels());
      const values = settings ?? (await api("/api/settings/")).effective;
      if (generation !== this.generation || !values) return;
      this.fill(values);
    } catch {
      this.models = null; // try again on the next load; sending works without changes
    }
  }

  fill(values) {
    this.base = { ...values };
    for (const name of NAMES) {
      const value = values[name];
      this.fields[name].value = value === null || value === undefined ? "" : String(value);
    }
  }

  /** After an answer: the server's settings, unless the user is mid-change. */
  refresh(settings) {
    if (settings && Object.keys(this.changes()).length === 0) this.fill(settings);
  }

  /** The fields the user changed, as the `settings` object of a chat.send frame. */
  changes() {
    if (this.base === null) return {};
    const changed = {};
    for (const name of NAMES) {
      const raw = this.fields[name].value.trim();
      if (raw === "") continue; // blank keeps what the conversation has
      const value = name === "model" ? raw : Number(raw);
      if (value !== this.base[name]) changed[name] = value;
    }
    return changed;
  }

  /** The server applied what was sent: it is now the conversation's. */
  commit(sent) {
    if (this.base !== null) this.base = { ...this.base, ...sent };
  }

  /** An invalid_setting / model_not_allowed error: name the field and show the panel. */
  showError(field, message) {
    this.clearError();
    this.error.textContent = message;
    this.error.hidden = false;
    const input = this.fields[field];
    if (input) input.setAttribute("aria-invalid", "true");
    if (!this.isOpen) this.open();
    (input || this.fields.model).focus();
  }

  clearError() {
    this.error.hidden = true;
    this.error.textContent = "";
    for (const input of Object.values(this.fields)) input.removeAttribute("aria-invalid");
  }
}
