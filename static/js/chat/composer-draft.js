// The composer's unsent text and files, kept in the tab's sessionStorage: they survive a reload
// and a closed tab reopened, never outlive the tab, and are the signed-in user's alone.

const PREFIX = "chat-draft:";

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage turned off: nothing is kept, the page works as before
  }
}

/** Forget every user's draft in this tab (signing out). */
export function forgetDrafts() {
  const store = storage();
  if (!store) return;
  for (const key of Object.keys(store)) {
    if (key.startsWith(PREFIX)) store.removeItem(key);
  }
}

export class ComposerDraft {
  constructor(userId) {
    this.key = `${PREFIX}${userId}`;
    this.written = null;
    const store = storage();
    // Someone else's, left when a session ended without signing out, is not theirs to see.
    for (const key of Object.keys(store || {})) {
      if (key.startsWith(PREFIX) && key !== this.key) store.removeItem(key);
    }
  }

  /** {text, files, team} kept from before the page loaded, or null. */
  load() {
    try {
      const saved = JSON.parse(storage()?.getItem(this.key) ?? "null");
      if (typeof saved?.text !== "string" || !Array.isArray(saved.files)) return null;
      this.written = JSON.stringify(saved);
      return saved;
    } catch {
      return null;
    }
  }

  /** Keep the box's text and its stored files (upload summaries, of `team`); nothing unsent,
   * nothing kept. */
  save(text, files, team) {
    const draft = text.trim() || files.length ? JSON.stringify({ text, files, team }) : "";
    if (draft === this.written) return;
    this.written = draft;
    try {
      if (draft) storage()?.setItem(this.key, draft);
      else storage()?.removeItem(this.key);
    } catch {
      // Full or refused: the draft is only not kept past this page.
    }
  }
}
