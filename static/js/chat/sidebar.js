// The conversation list: newest first, loaded page by page as it scrolls, searchable,
// with rename and delete (after a confirm dialog).

import { api } from "./api.js";
import { h, icon } from "./dom.js";

const SEARCH_DELAY_MS = 250;

function conversationUrl(id) {
  return `/c/${id}/`;
}

/** The API's `next` may be a URL or a page number; either becomes a same-origin path. */
function nextPath(next, query) {
  if (next === null || next === undefined || next === false) return null;
  if (typeof next === "number" || /^\d+$/.test(String(next))) {
    return `/api/conversations/?q=${encodeURIComponent(query)}&page=${next}`;
  }
  const url = new URL(String(next), window.location.origin);
  return url.origin === window.location.origin ? url.pathname + url.search : null;
}

export class Sidebar {
  constructor({ list, search, sentinel, status, dialog, handlers }) {
    this.list = list;
    this.search = search;
    this.sentinel = sentinel;
    this.status = status;
    this.dialog = dialog;
    this.handlers = handlers; // {open(id), deleted(id), renamed(id, title)}
    this.query = "";
    this.next = null;
    this.loading = false;
    this.generation = 0;
    this.activeId = null;
    search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.reload(), SEARCH_DELAY_MS);
    });
    search.form?.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(this.searchTimer);
      this.reload();
    });
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) this.loadMore();
    }, { root: list.closest(".conversation-scroll") }).observe(sentinel);
  }

  reload() {
    this.query = this.search.value.trim();
    this.generation += 1;
    this.list.replaceChildren();
    this.next = `/api/conversations/?q=${encodeURIComponent(this.query)}&page=1`;
    this.loading = false;
    return this.loadMore();
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    const generation = this.generation;
    this.loading = true;
    this.setStatus("Loading…");
    try {
      const data = await api(this.next);
      if (generation !== this.generation) return; // a newer search replaced this one
      for (const conversation of data.results || []) this.upsert(conversation, { atTop: false });
      this.next = nextPath(data.next, this.query);
      this.setStatus(this.emptyMessage());
    } catch (error) {
      if (generation === this.generation) this.setStatus(error.message);
    } finally {
      if (generation === this.generation) this.loading = false;
    }
    // A short first page may not fill the list: keep loading while the sentinel shows.
    if (generation === this.generation && this.next && this.sentinelVisible()) this.loadMore();
  }

  sentinelVisible() {
    const root = this.list.closest(".conversation-scroll");
    if (!root) return false;
    return this.sentinel.getBoundingClientRect().top < root.getBoundingClientRect().bottom;
  }

  emptyMessage() {
    if (this.list.children.length > 0) return "";
    return this.query ? `No conversations match “${this.query}”.` : "No conversations yet.";
  }

  setStatus(text) {
    this.status.textContent = text;
    this.status.hidden = text === "";
  }

  item(id) {
    return this.list.querySelector(`li[data-conversation-id="${Number(id)}"]`);
  }

  /** Add or update a conversation; atTop moves it first (it was just used). */
  upsert(conversation, { atTop = true } = {}) {
    let li = this.item(conversation.id);
    if (!li) {
      if (this.query && atTop) return; // not known to match the current search
      li = this.buildItem(conversation);
    } else {
      this.setTitle(li, conversation.title);
    }
    if (atTop) this.list.prepend(li);
    else if (!li.parentNode) this.list.append(li);
    this.setStatus(this.emptyMessage());
    this.markActive();
  }

  buildItem(conversation) {
    const link = h("a", { className: "conversation-link", href: conversationUrl(conversation.id) });
    link.addEventListener("click", (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
        return; // let the browser open a new tab or window
      }
      event.preventDefault();
      this.handlers.open(conversation.id);
    });
    const rename = h("button", { type: "button", className: "item-action rename" }, icon("edit"));
    const remove = h("button", { type: "button", className: "item-action delete" }, icon("trash"));
    const li = h(
      "li",
      { className: "conversation-item", dataset: { conversationId: conversation.id } },
      link,
      h("div", { className: "item-actions" }, rename, remove),
    );
    rename.addEventListener("click", () => this.startRename(li));
    remove.addEventListener("click", () => this.confirmDelete(li));
    this.setTitle(li, conversation.title);
    return li;
  }

  setTitle(li, title) {
    const text = title || "New chat";
    li.dataset.title = text;
    li.querySelector(".conversation-link").textContent = text;
    li.querySelector(".rename").setAttribute("aria-label", `Rename “${text}”`);
    li.querySelector(".delete").setAttribute("aria-label", `Delete “${text}”`);
  }

  setActive(id) {
    this.activeId = id;
    this.markActive();
  }

  markActive() {
    for (const li of this.list.children) {
      const link = li.querySelector(".conversation-link");
      if (Number(li.dataset.conversationId) === this.activeId) {
        link.setAttribute("aria-current", "page");
      } else {
        link.removeAttribute("aria-current");
      }
    }
  }

  startRename(li) {
    const id = Number(li.dataset.conversationId);
    const link = li.querySelector(".conversation-link");
    const input = h("input", {
      type: "text",
      className: "rename-input",
      value: li.dataset.title,
      maxlength: "200",
      "aria-label": "New title",
    });
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      input.replaceWith(link);
      if (!save || !title || title === li.dataset.title) {
        link.focus();
        return;
      }
      try {
        const updated = await api(`/api/conversations/${id}/`, {
          method: "PATCH",
          body: { title },
        });
        this.setTitle(li, updated?.title ?? title);
        this.handlers.renamed(id, updated?.title ?? title);
      } catch (error) {
        this.handlers.notify(`Could not rename: ${error.message}`);
      }
      link.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    link.replaceWith(input);
    input.focus();
    input.select();
  }

  confirmDelete(li) {
    const id = Number(li.dataset.conversationId);
    const dialog = this.dialog;
    dialog.querySelector("[data-dialog-title]").textContent = `Delete “${li.dataset.title}”?`;
    dialog.returnValue = "";
    dialog.addEventListener(
      "close",
      async () => {
        if (dialog.returnValue !== "delete") {
          // Focus inside the row first: its actions only show while it holds focus.
          li.querySelector(".conversation-link").focus();
          li.querySelector(".delete").focus();
          return;
        }
        try {
          await api(`/api/conversations/${id}/`, { method: "DELETE" });
          // The list may have been redrawn (a search landing) while the dialog was open.
          const row = this.item(id) || li;
          const neighbour = row.nextElementSibling || row.previousElementSibling;
          row.remove();
          this.setStatus(this.emptyMessage());
          (neighbour?.querySelector(".conversation-link") || this.search).focus();
          this.handlers.deleted(id);
        } catch (error) {
          this.handlers.notify(`Could not delete: ${error.message}`);
        }
      },
      { once: true },
    );
    dialog.showModal();
  }
}
