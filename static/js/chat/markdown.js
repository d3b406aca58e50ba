// Model output to safe DOM: marked renders, highlight.js colours code, DOMPurify sanitizes.
// highlight.js, a third of the chat's script, is fetched when an answer first shows code in a
// named language; that code shows plain until it arrives, then the answer is drawn again.
//
// The model's text is untrusted. Raw HTML in it is shown as text, images are never loaded,
// links keep only http(s)/mailto targets and open in a new tab without a referrer, and SVG,
// MathML, forms, styles and event handlers never reach the page. Text nested too deep to
// render is shown as plain text, and code past 20,000 characters an answer without colours.

import DOMPurify from "../../vendor/dompurify/purify.es.min.js";
import { Marked } from "../../vendor/marked/marked.esm.js";
import { h } from "./dom.js";

const SAFE_LINK = /^(?:https?:|mailto:)/i;

export function escapeHtml(text) {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

// Characters of code an answer may have coloured. Real code colours in a few milliseconds per
// 10,000, but some grammars take time growing with the square of a block's length on text made
// for it (40,000 characters: seconds of the page's only thread, at every render).
const HIGHLIGHT_BUDGET = 20_000;
let highlightLeft = 0; // of the answer being rendered (rendering is synchronous)
let awaitingColours = false; // the answer being rendered has code highlight.js will colour
let hljs = null;
let hljsArrival = null;

/** highlight.js, fetched once; a failed fetch is tried again at the next render that wants it. */
function fetchHighlighter() {
  if (!hljsArrival) {
    hljsArrival = import("../../vendor/highlight/highlight.min.js").then((module) => {
      hljs = module.default;
    });
    hljsArrival.catch(() => {
      hljsArrival = null;
    });
  }
  return hljsArrival;
}

/**
 * Highlighted HTML and the language, as the fence names it. A block that names none is shown
 * as plain text: guessing from a few lines colours prose as SQL and Python as CSS. So is a
 * block past what is left of the answer's budget.
 */
function highlight(code, language) {
  if (language && !hljs && code.length <= highlightLeft) awaitingColours = true;
  if (language && hljs?.getLanguage(language) && code.length <= highlightLeft) {
    highlightLeft -= code.length;
    return { html: hljs.highlight(code, { language, ignoreIllegals: true }).value, language };
  }
  return { html: escapeHtml(code), language };
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML from the model (block or inline) is shown as the text it is.
    html({ text }) {
      return escapeHtml(text);
    },
    // No images from model output, ever: show the alt text instead.
    image({ text }) {
      return escapeHtml(text);
    },
    checkbox({ checked }) {
      return checked ? "☑ " : "☐ ";
    },
    code({ text, lang }) {
      const named = (lang || "").trim().split(/\s+/)[0].toLowerCase();
      const { html, language } = highlight(text, named);
      // The language travels as a class (sanitizing keeps classes, not data attributes).
      const safe = language.replace(/[^a-z0-9_+#.-]/g, "");
      const label = safe ? ` language-${safe}` : "";
      return `<pre><code class="hljs${label}">${html}</code></pre>\n`;
    },
  },
});

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: [
    "img",
    "picture",
    "source",
    "video",
    "audio",
    "track",
    "iframe",
    "object",
    "embed",
    "form",
    "input",
    "button",
    "select",
    "option",
    "textarea",
    "style",
    "link",
    "meta",
    "base",
    "svg",
    "math",
    "template",
    "dialog",
  ],
  FORBID_ATTR: ["style", "id", "name", "src", "srcset", "action", "formaction", "background"],
  // Table column alignment from marked (CSS honours it; the CSP forbids inline styles). Its
  // value is a word, not a link: exempt from ALLOWED_URI_REGEXP, which applies to the rest.
  ADD_URI_SAFE_ATTR: ["align"],
  ALLOWED_URI_REGEXP: SAFE_LINK,
  ADD_DATA_URI_TAGS: [],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "A") return;
  const href = node.getAttribute("href");
  if (href && SAFE_LINK.test(href.trim())) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  } else {
    node.removeAttribute("href");
    node.removeAttribute("target");
  }
});

/** The text as it is, its lines kept: for what the renderer cannot take. */
function plainText(text) {
  const paragraph = document.createElement("p");
  String(text)
    .split("\n")
    .forEach((line, index) => {
      if (index) paragraph.append(document.createElement("br"));
      paragraph.append(line);
    });
  const fragment = document.createDocumentFragment();
  fragment.append(paragraph);
  return fragment;
}

// Blocks of text that take their direction from their own first letter: an Arabic or Hebrew
// paragraph reads right to left beside English ones; code stays left to right.
const TEXT_BLOCKS = "p, h1, h2, h3, h4, h5, h6, ul, ol, li, blockquote, table, th, td";

/**
 * Markdown text to a sanitized DocumentFragment, ready to insert. When its code waits for
 * highlight.js, `whenColoured` is called once that has arrived: render it again then.
 */
export function renderMarkdown(text, whenColoured = null) {
  const source = String(text ?? "");
  highlightLeft = HIGHLIGHT_BUDGET;
  awaitingColours = false;
  let fragment;
  try {
    fragment = DOMPurify.sanitize(marked.parse(source, { async: false }), PURIFY_CONFIG);
    if (awaitingColours) {
      fetchHighlighter().then(
        () => whenColoured?.(),
        () => {},
      );
    }
  } catch {
    // A few kilobytes of quotes or emphasis nested thousands deep overflow the renderer's
    // stack: shown as text, so that answer and the rest of the conversation still show.
    fragment = plainText(source);
  }
  for (const block of fragment.querySelectorAll(TEXT_BLOCKS)) block.dir = "auto";
  return fragment;
}

/** A URL, path or identifier: a long run without spaces that is not just letters. */
function hasLongToken(text) {
  return text.split(/\s+/).some((run) => run.length >= 30 && /[^\p{L}]/u.test(run));
}

/**
 * Tables scroll sideways in a box of their own (focusable, so keyboards can scroll it). A cell
 * holding a long URL or identifier may break it, so one link does not squeeze every other
 * column; words, however long, stay whole.
 */
export function wrapTables(root) {
  for (const table of root.querySelectorAll("table")) {
    const box = h("div", { className: "table-scroll", tabindex: "0", role: "region" });
    box.setAttribute("aria-label", "Table");
    table.replaceWith(box);
    box.append(table);
    for (const cell of table.querySelectorAll("th, td")) {
      if (hasLongToken(cell.textContent)) cell.classList.add("cell-breaks");
    }
  }
}
