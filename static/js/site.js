// Behaviour shared by every page: the light/dark theme toggle, remembered in localStorage,
// the dismiss button of a flashed message, a refused form's first error brought into view,
// forms with data-confirm (revoking, removing, deleting) asking before they submit, and signing
// out forgetting the chat's unsent drafts. Times shown in the viewer's time zone: local-times.js.

import { forgetDrafts } from "./chat/composer-draft.js";
import "./local-times.js";

const STORAGE_KEY = "theme";
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

/** The theme in effect: the stored choice, else the system's. */
export function currentTheme() {
  const chosen = document.documentElement.getAttribute("data-theme");
  if (chosen === "light" || chosen === "dark") return chosen;
  return systemDark.matches ? "dark" : "light";
}

function applyTheme(theme) {
  document.documentElement.setAttribute("data-theme", theme);
  try {
    window.localStorage.setItem(STORAGE_KEY, theme);
  } catch {
    // Not remembered, but still applied for this page.
  }
  syncToggles();
}

function syncToggles() {
  const dark = currentTheme() === "dark";
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    button.setAttribute("aria-pressed", String(dark));
    button.setAttribute("title", dark ? "Switch to light theme" : "Switch to dark theme");
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-theme-toggle]");
  if (button) applyTheme(currentTheme() === "dark" ? "light" : "dark");
});
systemDark.addEventListener("change", syncToggles);
syncToggles();

/** Removes a flashed message; focus goes to the next one, else to the messages or the page's main. */
function dismissFlash(button) {
  const item = button.closest("li");
  const list = item.parentElement;
  const sibling = item.nextElementSibling || item.previousElementSibling;
  item.remove();
  if (sibling) {
    sibling.querySelector("[data-flash-dismiss]").focus();
    return;
  }
  list.remove();
  const landing = document.getElementById("messages") || document.getElementById("main");
  landing?.focus({ preventScroll: true });
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-flash-dismiss]");
  if (button) dismissFlash(button);
});

// A form the server refused comes back scrolled to the top, its errors possibly far below
// (the policy page is long): the first refused field takes the focus, so it is in view and a
// screen reader reads its error; a form-wide error is scrolled to instead.
const problem = document.querySelector("main form [aria-invalid='true'], main form .form-error");
if (problem?.matches("[aria-invalid]")) problem.focus();
else problem?.scrollIntoView({ block: "center" });

document.addEventListener("submit", (event) => {
  const message = event.target.dataset?.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// Signing out leaves no unsent chat text behind in the tab for the next person.
document.addEventListener("submit", (event) => {
  if (event.target.matches?.(".logout-form") && !event.defaultPrevented) forgetDrafts();
});
