// A search result's snippet with the searched words marked, starting a few words before the
// first of them: the sidebar shows two lines of it, and the match has to be among them.

import { h } from "./dom.js";

// A query's items as chatapp.chat.search reads them: a phrase in quotes or a run of anything
// else, either may start with "-" (left out), and a bare OR between alternatives.
const CHUNK = /(-?)"([^"]*)"?|(-?)([^\s"]+)/g;
// What both databases index as one word: a run of letters and digits.
const WORD = /[\p{L}\p{N}]+/gu;
const LEAD = 30; // characters of text kept before the first match

function folded(word) {
  return word.normalize("NFD").replace(/\p{M}/gu, "").toLocaleLowerCase();
}

/** The words a query looks for, folded (case and accents), without the ones it leaves out. */
export function searchedWords(query) {
  const words = new Set();
  for (const [, minus, phrase, bareMinus, bare] of query.matchAll(CHUNK)) {
    if (minus || bareMinus || bare?.toLowerCase() === "or") continue;
    for (const word of (phrase ?? bare).match(WORD) || []) words.add(folded(word));
  }
  return words;
}

/** [text, marked] pieces of the snippet, its lead shortened to whole words before a match. */
export function snippetPieces(snippet, query) {
  const words = searchedWords(query);
  const pieces = [];
  let end = 0;
  for (const match of snippet.matchAll(WORD)) {
    if (!words.has(folded(match[0]))) continue;
    pieces.push([snippet.slice(end, match.index), false], [match[0], true]);
    end = match.index + match[0].length;
  }
  pieces.push([snippet.slice(end), false]);
  const lead = pieces[0][0];
  if (pieces.length > 1 && lead.length > LEAD) {
    const space = lead.indexOf(" ", lead.length - LEAD);
    pieces[0][0] = `…${lead.slice(space < 0 ? lead.length - LEAD : space + 1)}`;
  }
  return pieces.filter(([text]) => text);
}

export function snippetElement(snippet, query) {
  const parts = snippetPieces(snippet, query).map(([text, marked]) =>
    marked ? h("mark", { text }) : text,
  );
  return h("span", { className: "conversation-snippet" }, ...parts);
}
