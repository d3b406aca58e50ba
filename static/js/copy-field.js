// A Copy button beside a read-only field: an invitation link, a new API key. When the browser
// refuses to copy, the text is selected instead and the person is told to copy it themselves.
import { copyText } from "./chat/clipboard.js";

/** Set the status (a live region), emptied first and filled once that is drawn: screen readers
 * read a change, so a second copy's same words are said again. */
function say(status, text) {
  status.textContent = "";
  requestAnimationFrame(() => requestAnimationFrame(() => (status.textContent = text)));
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copyTarget);
  const status = document.getElementById(button.dataset.copyStatus);
  if (!field || !status) return;
  if (await copyText(field.value)) {
    say(status, button.dataset.copied || "Copied.");
    return;
  }
  field.focus();
  field.select();
  say(
    status,
    "Your browser did not let the page copy: the text is selected, press Ctrl+C (⌘C on a Mac) to copy it.",
  );
});
