// Applies the remembered colour theme before the first paint, so a dark page never flashes white.
// A classic (blocking) script on purpose; with nothing stored the CSS follows the system setting.
(() => {
  var stored = null;
  try {
    stored = window.localStorage.getItem("theme");
  } catch {
    // Storage may be disabled; the system theme still applies.
  }
  if (stored === "light" || stored === "dark") {
    document.documentElement.setAttribute("data-theme", stored);
  }
})();
