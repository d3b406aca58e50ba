// A shared conversation's page: each answer's text, sent as plain text, is shown as Markdown
// through the chat's own renderer (marked, then DOMPurify); wide tables scroll in their own
// box. Without scripts the plain text stays.
// Questions stay as they were typed, as in the chat.

import { renderMarkdown, wrapTables } from "./markdown.js";

for (const item of document.querySelectorAll(".shared-message")) {
  const target = item.querySelector("[data-markdown]");
  const source = item.querySelector("template.shared-source");
  if (!target || !source) continue;
  const text = source.content.textContent;
  const draw = (whenColoured = null) => {
    const fragment = renderMarkdown(text, whenColoured);
    wrapTables(fragment);
    target.replaceChildren(fragment);
  };
  // Code waiting for highlight.js shows plain, and is drawn again once it has arrived.
  draw(() => draw());
}
