// Search results' titles and snippets with the searched words marked; a snippet starts a few
// words before the first of them: the sidebar shows two lines of it, and the match has to be
// among them.

import { h } from "./dom.js";

// A query's items as chatapp.chat.search reads them: a phrase in quotes or a run of anything
// else, either may start with "-" (left out), and a bare OR between alternatives.
const CHUNK = /(-?)"([^"]*)"?|(-?)([^\s"]+)/g;
// What both databases index as one word: a run of letters and digits, with their combining
// marks (an accent typed apart, a vowel sign of Devanagari), or a mark would split the word.
const WORD = /[\p{L}\p{N}\p{M}]+/gu;
const LEAD = 30; // characters of text kept before the first match

// Full-width ASCII (ｍａｘ) is ASCII to search (chatapp/chat/search_index.py).
const FULL_WIDTH = /[\uFF01-\uFF5E]/g;

function folded(word) {
  const narrow = word.replace(FULL_WIDTH, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0));
  return narrow.normalize("NFD").replace(/\p{M}/gu, "").toLocaleLowerCase();
}

/** The words a query looks for, folded (case, accents and width), without the ones it leaves out. */
function searchedWords(query) {
  const words = new Set();
  for (const [, minus, phrase, bareMinus, bare] of query.matchAll(CHUNK)) {
    if (minus || bareMinus || bare?.toLowerCase() === "or") continue;
    for (const word of (phrase ?? bare).match(WORD) || []) words.add(folded(word));
  }
  return words;
}

/** [text, marked] pieces of the text; a lead longer than `lead` characters before the first
 * match is shortened to whole words. */
function markedPieces(text, query, lead = LEAD) {
  const words = searchedWords(query);
  const pieces = [];
  let end = 0;
  for (const match of text.matchAll(WORD)) {
    if (!words.has(folded(match[0]))) continue;
    pieces.push([text.slice(end, match.index), false], [match[0], true]);
    end = match.index + match[0].length;
  }
  pieces.push([text.slice(end), false]);
  const before = pieces[0][0];
  if (pieces.length > 1 && before.length > lead) {
    const space = before.indexOf(" ", before.length - lead);
    pieces[0][0] = `…${before.slice(space < 0 ? before.length - lead : space + 1)}`;
  }
  return pieces.filter(([piece]) => piece);
}

/** The text as nodes to append, the searched words in <mark>. */
export function markedText(text, query, lead = LEAD) {
  return markedPieces(text, query, lead).map(([piece, marked]) =>
    marked ? h("mark", { text: piece }) : piece,
  );
}

export function snippetElement(snippet, query) {
  return h("span", { className: "conversation-snippet" }, ...markedText(snippet, query));
}
