// One conversation's settings: the model picker in the header, and the "This chat" popover
// for temperature, max tokens, top_p, whether the team's tools are offered, and the answer
// format (text or JSON).
//
// Values are checked against the team's ranges (sent with the page, the same the server
// applies) before the popover closes; a refusal from the server lands on the same field.

import { api } from "./api.js";

const NAMES = ["model", "temperature", "max_tokens", "top_p"];
const FIELDS = [...NAMES, "response_format"];

/** The answer-format select's value for {type, schema_id}: "", "text", "json_schema:3"... */
function formatChoice(format) {
  if (!format?.type) return "";
  return format.type === "json_schema" ? `json_schema:${format.schema_id}` : format.type;
}

/** The select's value as `settings.response_format` of a chat.send frame. */
function formatSetting(choice) {
  const [type, id] = choice.split(":");
  return id ? { type, schema_id: Number(id) } : { type };
}

export class ConversationSettings {
  constructor({ toggle, panel, form, modelPicker, limits, team, onModel }) {
    this.toggle = toggle;
    this.panel = panel; // the dialog; its form holds the fields
    this.limits = limits;
    this.team = team; // this page's team: a new chat starts from the defaults it allows
    this.fields = {
      model: modelPicker,
      temperature: form.elements.temperature,
      max_tokens: form.elements.max_tokens,
      top_p: form.elements.top_p,
      response_format: form.elements.response_format,
    };
    this.tools = form.elements.tools; // a checkbox, not one of the numbers
    this.base = null; // the conversation's (or, for a new chat, the user's) settings
    this.edited = new Set(); // fields the user changed since the last show(): fill() keeps them
    this.generation = 0; // a newer load wins over a slower older one
    modelPicker.replaceChildren(...limits.models.map((model) => new Option(model.id, model.id)));
    modelPicker.addEventListener("change", () => {
      this.edited.add("model");
      this.clearError("model");
      onModel(modelPicker.value);
    });
    toggle.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.close();
    });
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.close();
      }
    });
    panel.addEventListener("input", (event) => {
      this.edited.add(event.target.name);
      this.clearError(event.target.name);
    });
    // Tab past Done (or a click on another control): the panel would cover where focus went.
    // The toggle is left out: its own click closes the panel.
    panel.addEventListener("focusout", (event) => {
      const to = event.relatedTarget;
      if (to && !panel.contains(to) && to !== toggle) this.close({ focus: false });
    });
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  open() {
    this.panel.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.fields.temperature.focus();
  }

  /** Where nothing can be sent (read only), the model is only shown and the panel is shut. */
  setDisabled(disabled) {
    this.fields.model.disabled = disabled;
    this.toggle.disabled = disabled;
    if (disabled && this.isOpen) {
      this.panel.hidden = true;
      this.toggle.setAttribute("aria-expanded", "false");
    }
  }

  /** Close when every value is in range; otherwise stay open with the errors shown. Focus
   * goes back to the toggle unless it already went elsewhere ({focus: false}). */
  close({ focus = true } = {}) {
    if (!this.isOpen || !this.validate({ focus })) return false;
    this.panel.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    if (focus) this.toggle.focus();
    return true;
  }

  /** Prefill from a conversation's settings (or the promise of them, as it loads), or (null)
   * from the user's effective defaults. */
  async show(settings) {
    const generation = ++this.generation;
    this.base = null;
    this.edited.clear();
    this.clearErrors();
    try {
      const values = (await settings) ?? (await api(`/api/settings/?team=${this.team}`)).effective;
      if (generation !== this.generation || !values) return;
      this.fill(values);
    } catch {
      // Sending works without changes; the next load tries again.
    }
  }

  /** The conversation's settings changed elsewhere (another tab sent with new ones): the
   * fields follow, but for those the user is changing here. */
  async follow(settings) {
    const generation = ++this.generation;
    try {
      const values = await settings;
      if (generation === this.generation && values) this.fill(values);
    } catch {
      // The fields keep what they show; the next load tries again.
    }
  }

  /** The fields take `values`, except those the user changed while they loaded. */
  fill(values) {
    this.base = { ...values, formatChoice: formatChoice(values.response_format) };
    for (const name of NAMES) {
      if (this.edited.has(name)) continue;
      const value = values[name];
      this.fields[name].value = value === null || value === undefined ? "" : String(value);
    }
    if (!this.edited.has("tools")) this.tools.checked = values.tools !== false;
    const format = this.fields.response_format;
    if (this.edited.has("response_format")) return;
    // A schema deleted since, or not listed: the prompt's choice applies.
    format.value = this.base.formatChoice;
    if (format.value !== this.base.formatChoice) format.value = "";
  }

  /** The fields the user changed, as the `settings` object of a chat.send frame. Before the
   * settings have loaded, that is every field the user touched. */
  changes() {
    const base = this.base;
    // Before the load, what the user touched; after it, what differs from the conversation's.
    const differs = (name, value, key = name) =>
      base === null ? this.edited.has(name) : value !== base[key];
    const changed = {};
    for (const name of NAMES) {
      const raw = this.fields[name].value.trim();
      if (raw === "") continue; // blank keeps what the conversation has
      const value = name === "model" ? raw : Number(raw);
      if (differs(name, value)) changed[name] = value;
    }
    if (base === null ? this.edited.has("tools") : this.tools.checked !== (base.tools !== false)) {
      changed.tools = this.tools.checked;
    }
    const format = this.fields.response_format.value;
    if (format !== "" && differs("response_format", format, "formatChoice")) {
      changed.response_format = formatSetting(format);
    }
    return changed;
  }

  /** The server applied what was sent: it is now the conversation's. */
  commit(sent) {
    if (this.base === null) return;
    this.base = { ...this.base, ...sent };
    if (sent.response_format) this.base.formatChoice = formatChoice(sent.response_format);
  }

  /** Give the model picker back the conversation's model (after a refused send): before a new
   * chat's defaults have loaded, `fallback` (the page's default), which they then replace.
   * Returns the model now picked. */
  resetModel(fallback) {
    this.edited.delete("model");
    const model = this.base?.model ?? fallback;
    this.fields.model.value = model;
    return model;
  }

  // ---- checking ---------------------------------------------------------------------------

  /** What is wrong with each field, in the server's words; {} when all is well. */
  problems() {
    const found = {};
    const number = (name) => {
      const raw = this.fields[name].value.trim();
      return raw === "" ? null : Number(raw);
    };
    const outside = (value, low, high) =>
      value !== null && (!Number.isFinite(value) || value < low || value > high);
    const { temperature, topP } = this.limits;
    if (outside(number("temperature"), temperature.min, temperature.max)) {
      found.temperature = `Temperature must be a number from 0 to ${temperature.max}.`;
    }
    if (outside(number("top_p"), topP.min, topP.max)) {
      found.top_p = `Top p must be a number from 0 to ${topP.max}.`;
    }
    const maxTokens = number("max_tokens");
    const model = this.limits.models.find((m) => m.id === this.fields.model.value);
    const high = model?.maxTokens ?? Number.MAX_SAFE_INTEGER;
    if (maxTokens !== null && (!Number.isInteger(maxTokens) || outside(maxTokens, 1, high))) {
      found.max_tokens = `Max tokens must be a whole number between 1 and ${high} in this team.`;
    }
    return found;
  }

  /** Show every problem on its field (focusing the first, unless told not to); true when
   * there are none. */
  validate({ focus = true } = {}) {
    const found = this.problems();
    for (const name of FIELDS) this.setError(name, found[name] || "");
    const first = NAMES.find((name) => found[name]);
    if (first && focus) this.fields[first].focus();
    return first === undefined;
  }

  /** A refusal from the server (invalid_setting, model_not_allowed): shown on its field. */
  showError(name, message) {
    if (!(name in this.fields)) return;
    if (name !== "model" && !this.isOpen) {
      this.panel.hidden = false;
      this.toggle.setAttribute("aria-expanded", "true");
    }
    this.setError(name, message);
    this.fields[name].focus();
  }

  setError(name, message) {
    const input = this.fields[name];
    const error = document.getElementById(`${input.id}-error`);
    error.textContent = message;
    error.hidden = message === "";
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  clearError(name) {
    if (name in this.fields) this.setError(name, "");
  }

  clearErrors() {
    for (const name of FIELDS) this.setError(name, "");
  }
}
