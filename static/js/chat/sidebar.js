// The conversation list of the current team: pinned ones first, then the rest by when they
// were last active, under date headings (in the browser's time zone); loaded page by page as
// it scrolls, searchable, with pin, rename and delete (after a confirm dialog).

import { api } from "./api.js";
import { h, icon } from "./dom.js";
import { markedText, snippetElement } from "./snippet.js";

const SEARCH_DELAY_MS = 250;
const DAY_MS = 24 * 60 * 60 * 1000;
// How often at most a tab open overnight looks whether the day changed (a sleeping laptop's
// timers fall behind the clock).
const DAY_CHECK_MS = 60 * 60 * 1000;
const MONTH = new Intl.DateTimeFormat("en", { month: "long", year: "numeric" });

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

/** The heading a conversation is listed under: {key, label}. */
export function groupOf(conversation, now = new Date()) {
  if (conversation.pinned) return { key: "pinned", label: "Pinned" };
  const updated = new Date(conversation.updated_at);
  // Whole calendar days in local time (rounded: a day with a DST change is not 24 hours).
  const days = Math.round((startOfDay(now) - startOfDay(updated)) / DAY_MS);
  if (days <= 0) return { key: "today", label: "Today" };
  if (days === 1) return { key: "yesterday", label: "Yesterday" };
  if (days <= 7) return { key: "week", label: "Previous 7 days" };
  if (days <= 30) return { key: "month", label: "Previous 30 days" };
  return {
    key: `${updated.getFullYear()}-${updated.getMonth()}`,
    label: MONTH.format(updated),
  };
}

const RESULTS = { key: "results", label: "Search results" };

/** The list's order, as the API gives it: pinned first, then the most recently active. */
function listOrder(a, b) {
  if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
  const byTime = Date.parse(b.updated_at) - Date.parse(a.updated_at);
  return byTime || b.id - a.id;
}

/** A conversation's address; a search result's names the message found (`#message-<id>`),
 * so a result opened in a new tab lands on it too. */
function conversationUrl(id, messageId = null) {
  return messageId ? `/c/${id}/#message-${messageId}` : `/c/${id}/`;
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
  constructor({ list, search, sentinel, status, dialog, team, handlers }) {
    this.list = list; // holds one section per heading, each with its own <ul>
    this.team = team; // the team whose conversations are listed
    this.search = search;
    this.sentinel = sentinel;
    this.status = status;
    this.dialog = dialog;
    this.handlers = handlers; // {open(id), deleted(id), renamed(id, title), teamNotFound()}
    this.entries = new Map(); // id -> {data: the API's summary, li}
    this.order = []; // ids, in the order shown
    this.sections = new Map(); // heading key -> {section, heading, ul}
    this.query = "";
    this.next = null;
    this.loading = false;
    // Renames, pins and deletions heard while a page of the list loads, for rows not listed
    // yet: that page may have been read before them.
    this.meanwhile = new Map();
    // While the list is asked again after a reconnect, one map per request of what changed
    // here meanwhile (id -> fields, or deleted): the answer may predate those changes.
    this.changesDuring = new Set();
    this.generation = 0;
    this.activeId = null;
    this.left = false; // the user is no longer in the team: only what stays theirs is listed
    search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.reload(), SEARCH_DELAY_MS);
    });
    search.form?.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(this.searchTimer);
      this.reload();
    });
    new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.loadMore();
      },
      { root: list.closest(".conversation-scroll") },
    ).observe(sentinel);
    this.drawnDay = startOfDay(new Date()).getTime(); // the day the headings were drawn for
    this.watchTheDay();
  }

  /** A tab left open overnight: at midnight "Today" becomes "Yesterday", and so on. */
  watchTheDay() {
    const now = new Date();
    const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
    setTimeout(
      () => {
        if (startOfDay(new Date()).getTime() !== this.drawnDay) this.render();
        this.watchTheDay();
      },
      Math.min(midnight - now + 1000, DAY_CHECK_MS),
    );
  }

  /** The address of the list's first page, for its search and team. */
  firstPage() {
    const team = this.team ? `&team=${this.team}` : "";
    return `/api/conversations/?q=${encodeURIComponent(this.query)}&page=1${team}`;
  }

  reload() {
    this.query = this.search.value.trim();
    this.generation += 1;
    this.list.replaceChildren();
    this.entries.clear();
    this.sections.clear();
    this.order = [];
    this.meanwhile.clear();
    this.next = this.firstPage();
    this.loading = false;
    return this.loadMore();
  }

  /** What other tabs did while the connection was down (conversations started, renamed,
   * pinned, unpinned, deleted) was never heard: the first page of the list (of a search, as
   * many rows as are listed) is asked again and merged in, so the rows loaded, the scroll and
   * the search stay. */
  async refresh() {
    const generation = this.generation;
    const changed = new Map();
    this.changesDuring.add(changed);
    let data;
    const results = [];
    try {
      // A search's order is the server's (best first): as many rows are asked as are listed,
      // so one missing from them is gone (or comes again with the next page).
      let next = this.firstPage();
      const listed = this.order.length;
      while (next) {
        data = await api(next);
        results.push(...(data.results || []));
        next = this.query && results.length < listed ? nextPath(data.next, this.query) : null;
      }
    } catch {
      return; // the list stays as it was: the next reconnect asks again
    } finally {
      this.changesDuring.delete(changed);
    }
    if (generation !== this.generation) return; // a newer search replaced the list
    const fetched = new Set(results.map((conversation) => conversation.id));
    const last = results.at(-1);
    for (const id of this.order) {
      if (fetched.has(id) || changed.has(id)) continue; // changed here: newer than the answer
      const known = this.entries.get(id).data;
      // Pinned ones all come before the first page's last unpinned row: one missing from it
      // was unpinned meanwhile (or deleted), and goes where an unpinned one would.
      if (!this.query && known.pinned && last && !last.pinned) known.pinned = false;
      // Not asked again: gone, unless the list goes on and it would come after the first page.
      const gone = !data.next || this.query || (last && listOrder(known, last) < 0);
      if (gone) {
        this.entries.get(id).li.remove();
        this.entries.delete(id);
      }
    }
    for (const conversation of results) {
      const mine = changed.get(conversation.id);
      if (mine?.deleted) continue;
      const entry = this.entries.get(conversation.id);
      if (!entry) {
        this.add({ ...conversation, ...mine });
        continue;
      }
      Object.assign(entry.data, conversation, mine);
      this.setTitle(entry.li, entry.data.title);
    }
    // A search's results keep the server's order: the first page's, then those loaded after.
    const rest = this.order.filter((id) => this.entries.has(id) && !fetched.has(id));
    const ids = new Set([...results.map((conversation) => conversation.id), ...rest]);
    this.order = [...ids].filter((id) => this.entries.has(id));
    if (this.query) this.next = nextPath(data.next, this.query); // after the rows asked again
    this.render();
  }

  /** The user left the team, was removed from it, or it was deleted: ask the list again, so
   * that conversations deleted with the team drop out (the others stay theirs to read). The
   * keyboard stays on the row it was on. */
  async teamLeft() {
    this.left = true;
    const row = document.activeElement?.closest(".conversation-item");
    const focused = row && this.list.contains(row) ? Number(row.dataset.conversationId) : null;
    await this.reload();
    if (focused === null || document.activeElement !== document.body) return; // moved on
    (this.item(focused)?.querySelector(".conversation-link") || this.search).focus();
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    const generation = this.generation;
    this.loading = true;
    this.setStatus("Loading…");
    try {
      const data = await api(this.next);
      if (generation !== this.generation) return; // a newer search replaced this one
      for (const conversation of data.results || []) this.add(conversation);
      this.render();
      this.next = nextPath(data.next, this.query);
      this.showStatus();
    } catch (error) {
      if (generation === this.generation) this.setStatus(error.message);
      if (error.status === 404 && this.team) this.handlers.teamNotFound?.(); // left it?
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

  /** Why the list is empty; or, for a search, how many match (said, not shown: the results
   * show themselves). */
  showStatus() {
    const count = this.order.length;
    if (count === 0) {
      const none = this.left
        ? "You have no conversations left in this team."
        : "No conversations yet.";
      this.setStatus(this.query ? `No conversations match “${this.query}”.` : none);
    } else if (!this.query) {
      this.setStatus("");
    } else if (this.next) {
      this.setStatus(`More than ${count} conversations match`, { heardOnly: true });
    } else {
      const matches = count === 1 ? "1 conversation matches" : `${count} conversations match`;
      this.setStatus(matches, { heardOnly: true });
    }
  }

  setStatus(text, { heardOnly = false } = {}) {
    if (this.status.textContent !== text) this.status.textContent = text; // said once
    this.status.hidden = text === "";
    this.status.classList.toggle("visually-hidden", heardOnly);
  }

  item(id) {
    return this.entries.get(Number(id))?.li ?? null;
  }

  /** A conversation from a page of the list, after those already listed. */
  add(conversation) {
    const heard = this.meanwhile.get(conversation.id);
    if (this.entries.has(conversation.id) || heard?.deleted) return;
    const data = { pinned: false, ...conversation, ...heard };
    this.entries.set(data.id, { data, li: this.buildItem(data) });
    this.order.push(data.id);
  }

  /** Add or update a conversation; atTop: it was just used (it moves to Today). */
  upsert(conversation, { atTop = true } = {}) {
    this.changedHere(conversation.id, conversation);
    const entry = this.entries.get(conversation.id);
    if (!entry) {
      if (this.query && atTop) return; // not known to match the current search
      const now = new Date().toISOString();
      this.add({ created_at: now, updated_at: now, ...conversation });
    } else {
      Object.assign(entry.data, conversation);
      this.setTitle(entry.li, entry.data.title);
    }
    if (atTop) {
      const data = this.entries.get(conversation.id).data;
      data.updated_at = new Date().toISOString();
      this.changedHere(conversation.id, { updated_at: data.updated_at });
      const others = this.order.filter((id) => id !== conversation.id);
      if (this.query) this.order = [conversation.id, ...others]; // results keep their order
    }
    this.render();
  }

  /** A message was written in a listed conversation: it moves up to Today, as its place in
   * the list after a reload (the server's updated_at) would have it. */
  touched(id) {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.data.updated_at = new Date().toISOString();
    this.changedHere(id, { updated_at: entry.data.updated_at });
    this.render();
  }

  /** A new title from elsewhere (the model named it, another tab renamed it). */
  retitle(id, title) {
    this.changedHere(id, { title });
    const entry = this.entries.get(id);
    if (!entry) return this.heard(id, { title });
    entry.data.title = title;
    this.setTitle(entry.li, title);
  }

  /** Pinned or unpinned (in this tab or another): the row moves to its place. */
  setPinned(id, pinned) {
    this.changedHere(id, { pinned });
    const entry = this.entries.get(id);
    if (!entry) return this.heard(id, { pinned });
    if (entry.data.pinned === pinned) return;
    entry.data.pinned = pinned;
    this.render();
  }

  remove(id) {
    this.changedHere(id, { deleted: true });
    const entry = this.entries.get(id);
    if (!entry) return this.heard(id, { deleted: true });
    // Deleted elsewhere under the keyboard's focus: the next row (or the search box) takes it.
    const focused = entry.li.contains(document.activeElement);
    const neighbour = this.neighbourOf(id);
    entry.li.remove();
    this.entries.delete(id);
    this.order = this.order.filter((other) => other !== id);
    this.render();
    if (focused) this.focusRowOrSearch(neighbour);
  }

  /** The row after a conversation's, or else the one before (null: it is the only one). */
  neighbourOf(id) {
    const at = this.order.indexOf(id);
    const neighbourId = this.order[at + 1] ?? this.order[at - 1];
    return neighbourId === undefined ? null : this.item(neighbourId);
  }

  focusRowOrSearch(li) {
    (li?.querySelector(".conversation-link") || this.search).focus();
  }

  /** A change heard or made while the list is asked again: it wins over the answer. */
  changedHere(id, change) {
    for (const changed of this.changesDuring) changed.set(id, { ...changed.get(id), ...change });
  }

  /** A change to a conversation not listed: kept for the page of the list loading now. */
  heard(id, change) {
    if (this.loading) this.meanwhile.set(id, { ...this.meanwhile.get(id), ...change });
  }

  /** Draw the list: rows under their headings, in order. Rows already in place stay put, so
   * the keyboard's focus stays on them. */
  render() {
    if (!this.query) {
      this.order.sort((a, b) => listOrder(this.entries.get(a).data, this.entries.get(b).data));
    }
    const now = new Date();
    this.drawnDay = startOfDay(now).getTime();
    const groups = [];
    for (const id of this.order) {
      const group = this.query ? RESULTS : groupOf(this.entries.get(id).data, now);
      if (groups.at(-1)?.key !== group.key) groups.push({ ...group, ids: [] });
      groups.at(-1).ids.push(id);
    }
    const used = new Set();
    groups.forEach((group, index) => {
      const place = this.section(group);
      used.add(group.key);
      if (this.list.children[index] !== place.section) {
        this.list.insertBefore(place.section, this.list.children[index] || null);
      }
      group.ids.forEach((id, at) => {
        const li = this.entries.get(id).li;
        if (place.ul.children[at] !== li) place.ul.insertBefore(li, place.ul.children[at] || null);
      });
      while (place.ul.children.length > group.ids.length) place.ul.lastElementChild.remove();
    });
    for (const [key, place] of this.sections) {
      if (!used.has(key)) {
        place.section.remove();
        this.sections.delete(key);
      }
    }
    this.showStatus();
    this.markActive();
  }

  /** The section under one heading (made the first time it is needed). */
  section(group) {
    let place = this.sections.get(group.key);
    if (!place) {
      const id = `conversation-group-${group.key}`;
      const heading = h("h2", { className: "conversation-group-heading", id, text: group.label });
      const ul = h("ul", { className: "conversation-list", "aria-labelledby": id });
      const section = h("section", { className: "conversation-group" }, heading, ul);
      place = { section, heading, ul };
      this.sections.set(group.key, place);
    }
    place.heading.textContent = group.label;
    return place;
  }

  buildItem(conversation) {
    const found = conversation.snippet ? conversation.message_id : null;
    const link = h("a", {
      className: "conversation-link",
      href: conversationUrl(conversation.id, found),
    });
    link.addEventListener("click", (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
        return; // let the browser open a new tab or window
      }
      event.preventDefault();
      // A search result found through a message lands on that message.
      this.handlers.open(conversation.id, Number(li.dataset.messageId) || null);
    });
    // One Tab stop per row: the link. Its menu opens with the arrow key or the pointer.
    const more = h(
      "button",
      {
        type: "button",
        className: "item-menu-button",
        tabindex: "-1",
        "aria-haspopup": "menu",
        "aria-expanded": "false",
      },
      icon("more"),
    );
    const li = h(
      "li",
      { className: "conversation-item", dataset: { conversationId: conversation.id } },
      link,
      more,
    );
    link.addEventListener("keydown", (event) => {
      if (
        event.key === "ArrowRight" ||
        event.key === "ContextMenu" ||
        (event.shiftKey && event.key === "F10")
      ) {
        event.preventDefault();
        this.openMenu(li);
      }
    });
    more.addEventListener("click", () => this.openMenu(li));
    link.append(h("span", { className: "conversation-name", dir: "auto" }));
    if (conversation.snippet && conversation.message_id) {
      li.dataset.messageId = conversation.message_id;
      link.append(snippetElement(conversation.snippet, this.query));
    }
    this.setTitle(li, conversation.title);
    return li;
  }

  /** The row menu (Rename, Delete): one element, moved into the row it serves. */
  buildMenu() {
    const item = (label, action) => {
      const button = h("button", { type: "button", role: "menuitem", tabindex: "-1", text: label });
      button.addEventListener("click", () => {
        const li = this.menu.closest("li");
        this.closeMenu({ focus: false });
        action(li);
      });
      return button;
    };
    const menu = h(
      "div",
      { className: "row-menu", role: "menu" },
      item("Rename", (li) => this.startRename(li)),
      item("Pin", (li) => this.togglePin(li)),
      item("Delete", (li) => this.confirmDelete(li)),
    );
    menu.hidden = true;
    menu.addEventListener("keydown", (event) => {
      const items = [...menu.querySelectorAll("[role=menuitem]")];
      const index = items.indexOf(document.activeElement);
      const moves = { ArrowDown: 1, ArrowUp: -1 };
      if (event.key in moves) {
        event.preventDefault();
        items[(index + moves[event.key] + items.length) % items.length].focus();
      } else if (event.key === "Home" || event.key === "End") {
        event.preventDefault();
        (event.key === "Home" ? items[0] : items.at(-1)).focus();
      } else if (event.key === "Escape" || event.key === "ArrowLeft") {
        event.preventDefault();
        event.stopPropagation();
        this.closeMenu({ focus: true });
      } else if (event.key === "Tab") {
        this.closeMenu({ focus: false });
      }
    });
    menu.addEventListener("focusout", (event) => {
      if (!menu.contains(event.relatedTarget)) this.closeMenu({ focus: false });
    });
    return menu;
  }

  openMenu(li) {
    this.menu ??= this.buildMenu();
    if (!this.menu.hidden && this.menu.closest("li") === li) {
      this.closeMenu({ focus: true });
      return;
    }
    this.closeMenu({ focus: false });
    this.menu.setAttribute("aria-label", `Actions for “${li.dataset.title}”`);
    const pinned = this.entries.get(Number(li.dataset.conversationId))?.data.pinned;
    this.menu.querySelector("[role=menuitem]:nth-child(2)").textContent = pinned ? "Unpin" : "Pin";
    li.append(this.menu);
    li.classList.add("menu-open");
    li.querySelector(".item-menu-button").setAttribute("aria-expanded", "true");
    this.menu.hidden = false;
    this.menu.querySelector("[role=menuitem]").focus();
  }

  closeMenu({ focus }) {
    const li = this.menu?.closest("li");
    if (!li || this.menu.hidden) return;
    this.menu.hidden = true;
    li.classList.remove("menu-open");
    li.querySelector(".item-menu-button").setAttribute("aria-expanded", "false");
    if (focus) li.querySelector(".conversation-link").focus();
  }

  setTitle(li, title) {
    const text = title || "New chat";
    li.dataset.title = text;
    // A search result's title shows the searched words, wherever they are in it.
    const name = this.query ? markedText(text, this.query, Number.POSITIVE_INFINITY) : [text];
    li.querySelector(".conversation-name").replaceChildren(...name);
    li.querySelector(".conversation-link").title = text; // the whole of a title cut short
    li.querySelector(".item-menu-button").setAttribute("aria-label", `Actions for “${text}”`);
  }

  setActive(id) {
    this.activeId = id;
    this.markActive();
  }

  markActive() {
    for (const { li } of this.entries.values()) {
      const link = li.querySelector(".conversation-link");
      if (Number(li.dataset.conversationId) === this.activeId) {
        link.setAttribute("aria-current", "page");
      } else {
        link.removeAttribute("aria-current");
      }
    }
  }

  async togglePin(li) {
    const id = Number(li.dataset.conversationId);
    const pinned = !this.entries.get(id)?.data.pinned;
    try {
      const updated = await api(`/api/conversations/${id}/`, {
        method: "PATCH",
        body: { pinned },
      });
      const entry = this.entries.get(id);
      if (!entry) return; // the list was redrawn meanwhile (a search landing)
      this.setPinned(id, updated?.pinned ?? pinned);
      entry.li.querySelector(".conversation-link").focus();
      this.handlers.announce?.(`${pinned ? "Pinned" : "Unpinned"} “${li.dataset.title}”`);
    } catch (error) {
      this.handlers.notify(`Could not ${pinned ? "pin" : "unpin"}: ${error.message}`);
      this.focusRow(id, li); // the menu item that had the keyboard is gone
    }
  }

  /** Back to a row's link; the list may have been redrawn (a search landing) meanwhile. */
  focusRow(id, li) {
    (this.item(id) || li).querySelector(".conversation-link").focus();
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
    const before = li.dataset.title; // a rename from elsewhere meanwhile is not undone
    let done = false;
    // focus: back to the row, unless the user moved it elsewhere (Tab, a click) to leave.
    const finish = async (save, { focus = true } = {}) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      input.remove();
      link.hidden = false;
      if (!save || !title || title === before) {
        if (focus) link.focus();
        return;
      }
      try {
        const updated = await api(`/api/conversations/${id}/`, {
          method: "PATCH",
          body: { title },
        });
        // The list may have been redrawn (a search landing) while the title was typed.
        this.retitle(id, updated?.title ?? title);
        this.handlers.renamed(id, updated?.title ?? title);
      } catch (error) {
        this.handlers.notify(`Could not rename: ${error.message}`);
      }
      if (focus) link.focus();
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
    input.addEventListener("blur", (event) =>
      finish(true, { focus: event.relatedTarget === null }),
    );
    // The link stays, hidden: a new title or the active mark from elsewhere still reach it.
    link.hidden = true;
    link.before(input);
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
          li.querySelector(".conversation-link").focus(); // back to the row it was asked on
          return;
        }
        try {
          await api(`/api/conversations/${id}/`, { method: "DELETE" });
          // The list may have been redrawn (a search landing) while the dialog was open.
          const neighbour = this.neighbourOf(id);
          if (!this.order.includes(id)) li.remove();
          this.remove(id);
          this.focusRowOrSearch(neighbour);
          this.handlers.deleted(id);
        } catch (error) {
          this.handlers.notify(`Could not delete: ${error.message}`);
          this.focusRow(id, li);
        }
      },
      { once: true },
    );
    dialog.showModal();
  }
}
