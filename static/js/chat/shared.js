// A shared conversation's page: each answer's text, sent as plain text, is shown as Markdown
// through the chat's own renderer (marked, then DOMPurify). Without scripts the plain text stays.
// Questions stay as they were typed, as in the chat.

import { renderMarkdown } from "./markdown.js";

for (const item of document.querySelectorAll(".shared-message")) {
  const target = item.querySelector("[data-markdown]");
  const source = item.querySelector("template.shared-source");
  if (!target || !source) continue;
  const text = source.content.textContent;
  target.replaceChildren(renderMarkdown(text, () => target.replaceChildren(renderMarkdown(text))));
}
