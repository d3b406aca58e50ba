// Copy to the clipboard, with a fallback for browsers that refuse the async Clipboard API.

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

/** Copy, then say so: on the button for a moment, and to screen readers through `announce`. */
export async function copyWithFeedback(button, text, announce) {
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  const copied = await copyText(text);
  const outcome = copied ? "Copied" : "Copy failed";
  setButtonLabel(button, outcome);
  announce(outcome);
  button.classList.toggle("is-done", copied);
  clearTimeout(button.copyTimer);
  button.copyTimer = setTimeout(() => {
    setButtonLabel(button, label);
    button.classList.remove("is-done");
  }, 1500);
}

function setButtonLabel(button, label) {
  const span = button.querySelector(".label");
  (span || button).textContent = label;
}
