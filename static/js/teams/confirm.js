// Forms with data-confirm ask before they submit (removing people, deleting prompts, leaving).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset?.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
