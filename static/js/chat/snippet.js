// Search results' titles and snippets with the searched words marked; a snippet starts a few
// words before the first of them: the sidebar shows two lines of it, and the match has to be
// among them.

import { h } from "./dom.js";

// A query's items as chatapp.chat.search reads them: a phrase in quotes or a run of anything
// else, either may start with "-" (left out), and a bare OR between alternatives.
const CHUNK = /(-?)"([^"]*)"?|(-?)([^\s"]+)/g;
const LEAD = 30; // characters of text kept before the first match

// Read as chatapp/chat/search_index.py reads text for search; the lists are the same ones
// (tests/api/test_search.py compares them). Each CJK character is a word of its own, and a
// query's run of them is found as a substring; each emoji is a word of its own.
const CJK_RANGES = [
  [0x3005, 0x3007],
  [0x303b, 0x303c],
  [0x3041, 0x3096],
  [0x309d, 0x309f],
  [0x30a1, 0x30fa],
  [0x30fc, 0x30ff],
  [0x3105, 0x312f],
  [0x3131, 0x318e],
  [0x31a0, 0x31bf],
  [0x31f0, 0x31ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xff66, 0xff9f],
  [0x1b000, 0x1b16f],
  [0x20000, 0x323af],
];
const EMOJI_RANGES = [
  [0x2300, 0x23ff],
  [0x2600, 0x27bf],
  [0x2b00, 0x2bff],
  [0x1f000, 0x1faff],
];
// Left out of a word: Arabic and Hebrew vowel marks, the tatweel, variation selectors.
const DROPPED_RANGES = [
  [0x0591, 0x05bd],
  [0x05bf, 0x05bf],
  [0x05c1, 0x05c2],
  [0x05c4, 0x05c5],
  [0x05c7, 0x05c7],
  [0x0610, 0x061a],
  [0x0640, 0x0640],
  [0x064b, 0x065f],
  [0x0670, 0x0670],
  [0x06d6, 0x06dc],
  [0x06df, 0x06e4],
  [0x06e7, 0x06e8],
  [0x06ea, 0x06ed],
  [0x0898, 0x089f],
  [0x08ca, 0x08e1],
  [0x08e3, 0x08ff],
  [0xfe0e, 0xfe0f],
];
// The accents a Latin letter is found without (café is cafe, Việt is viet); a letter of its own
// (đ, ø, й, ά) keeps what it carries.
const LATIN_ACCENTS = [
  0x300, 0x301, 0x302, 0x303, 0x304, 0x306, 0x307, 0x308, 0x309, 0x30a, 0x30b, 0x30c, 0x30f, 0x311,
  0x31b, 0x323, 0x324, 0x325, 0x326, 0x327, 0x328, 0x32d, 0x32e, 0x330, 0x331,
];
const LATIN_RANGES = [
  [0xc0, 0x24f],
  [0x1e00, 0x1eff],
];

const hex = (code) => `\\u{${code.toString(16)}}`;
const characterClass = (ranges) => `[${ranges.map(([a, b]) => `${hex(a)}-${hex(b)}`).join("")}]`;
const CJK = characterClass(CJK_RANGES);
const EMOJI = characterClass(EMOJI_RANGES);
const CJK_CHARACTER = new RegExp(`^${CJK}$`, "u");
const DROPPED = new RegExp(characterClass(DROPPED_RANGES), "gu");
const ACCENTS = new RegExp(`[${LATIN_ACCENTS.map(hex).join("")}]`, "gu");
const LATIN_LETTER = /^\p{L}$/u;
// A word as both databases read one: a run of letters and digits with their marks (an accent
// typed apart, a vowel sign of Devanagari), or a mark would split the word; each CJK character
// alone. An emoji is marked with what joins it into one picture (a skin tone, another emoji
// after a zero-width joiner, a flag's second letter), never split from it.
const EMOJI_PICTURE = `${EMOJI}(?:[\\u{fe0e}\\u{fe0f}\\u{20e3}]|\\u{200d}${EMOJI}|[\\u{1f1e6}-\\u{1f1ff}\\u{1f3fb}-\\u{1f3ff}])*`;
const WORD = new RegExp(`${CJK}|${EMOJI_PICTURE}|(?:(?!${CJK})[\\p{L}\\p{N}\\p{M}])+`, "gu");
const EMOJI_CHARACTER = new RegExp(EMOJI, "gu");

function foldedCharacter(c) {
  const code = c.codePointAt(0);
  if (code >= 0xff01 && code <= 0xff5e) return String.fromCodePoint(code - 0xfee0); // ｍ is m
  if (!LATIN_RANGES.some(([a, b]) => code >= a && code <= b) || !LATIN_LETTER.test(c)) return c;
  const base = c.normalize("NFD").replace(ACCENTS, "").normalize("NFC");
  return [...base].length === 1 ? base : c;
}

/** A word as search compares it: composed, accents of Latin letters, width, Arabic and Hebrew
 * marks and case aside. */
function folded(word) {
  const composed = word.normalize("NFC");
  return [...composed].map(foldedCharacter).join("").replace(DROPPED, "").toLocaleLowerCase();
}

/** The words of a text as [term, start, end]: a word folded, a CJK character, or an emoji
 * picture as the list of its emoji. */
function words(text) {
  const found = [];
  for (const match of text.matchAll(WORD)) {
    const emoji = match[0].match(EMOJI_CHARACTER);
    const term = emoji ?? folded(match[0]);
    if (term.length) found.push([term, match.index, match.index + match[0].length]);
  }
  return found;
}

/** What a query looks for, as runs of terms: a word alone, a run of CJK characters found
 * together (as the search finds them), or an emoji picture; not the words it leaves out. */
function searchedRuns(query) {
  const runs = [];
  for (const [, minus, phrase, bareMinus, bare] of query.matchAll(CHUNK)) {
    if (minus || bareMinus || bare?.toLowerCase() === "or") continue;
    let cjk = [];
    for (const [term] of words(phrase ?? bare)) {
      if (typeof term === "string" && CJK_CHARACTER.test(term)) {
        cjk.push(term);
        continue;
      }
      if (cjk.length) runs.push(cjk);
      cjk = [];
      runs.push([term]);
    }
    if (cjk.length) runs.push(cjk);
  }
  return runs.sort((a, b) => b.length - a.length); // the longest run first where several fit
}

/** Whether a searched term is this word: an emoji picture holding the searched one's emoji
 * (👍 marks 👍🏽, as the search finds it), or the same word. */
function same(searched, word) {
  if (typeof searched === "string") return searched === word;
  return Array.isArray(word) && searched.every((emoji) => word.includes(emoji));
}

/** [text, marked] pieces of the text; a lead longer than `lead` characters before the first
 * match is shortened to whole words. */
function markedPieces(text, query, lead = LEAD) {
  const runs = searchedRuns(query);
  const found = words(text);
  const pieces = [];
  let end = 0;
  for (let at = 0; at < found.length; ) {
    const run = runs.find((r) =>
      r.every((term, n) => at + n < found.length && same(term, found[at + n][0])),
    );
    if (!run) {
      at += 1;
      continue;
    }
    const [start, stop] = [found[at][1], found[at + run.length - 1][2]];
    pieces.push([text.slice(end, start), false], [text.slice(start, stop), true]);
    end = stop;
    at += run.length;
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
