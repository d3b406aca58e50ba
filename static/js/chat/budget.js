// The composer's budget meters: drawn by the server at page load, redrawn from /api/budget/
// after each answer, so a person sees the team's budget and their own limit fill up.

import { api } from "./api.js";

const REFRESH_DELAY_MS = 500; // answers ending close together cause one fetch

export class BudgetMeters {
  constructor(container, team, { onNotFound } = {}) {
    this.container = container;
    this.team = team; // this page's team, whatever team another tab switched to since
    this.onNotFound = onNotFound; // the team is not the user's (any more): the page checks why
    this.timer = null;
    this.stopped = false;
  }

  /** Ask for the numbers again a moment after an answer ended. */
  refreshSoon() {
    if (!this.container || this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  async refresh() {
    if (this.stopped) return;
    let data;
    try {
      data = await api(`/api/budget/?team=${this.team}`);
    } catch (error) {
      if (error.status === 404) this.onNotFound?.();
      return; // the meters keep their last numbers; the next answer tries again
    }
    if (!this.stopped) this.render(data.meters);
  }

  /** No more refreshes, and no meters: the user left the team, so each would be refused. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.container) this.container.hidden = true;
  }

  render(meters) {
    for (const meter of meters) {
      const row = this.container.querySelector(`.budget-meter[data-kind="${meter.kind}"]`);
      if (!row) continue; // a limit set since the page loaded shows on the next load
      row.className = `budget-meter budget-${meter.level}`;
      const bar = row.querySelector("meter");
      bar.value = Math.min(meter.used, meter.limit);
      bar.textContent = `${meter.percent}%`;
      bar.setAttribute("aria-label", `${meter.label}: ${meter.percent}% used`);
      const text = row.querySelector(".budget-text");
      text.textContent = meter.message;
      if (meter.level === "ok") text.removeAttribute("role");
      else text.setAttribute("role", "status");
    }
  }
}
