// Every date-time the server renders (`<time datetime>`, in UTC: chatapp/core/templatetags/
// times.py) shown in the viewer's own time zone, named, with the full value in its title.

const PARTS = { year: "numeric", month: "2-digit", day: "2-digit" };
const CLOCK = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
const FORMATS = {
  date: new Intl.DateTimeFormat(undefined, PARTS),
  minutes: new Intl.DateTimeFormat(undefined, { ...PARTS, ...CLOCK }),
  seconds: new Intl.DateTimeFormat(undefined, { ...PARTS, ...CLOCK, second: "2-digit" }),
};
const FULL = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

/** "2026-12-06 18:00 GMT+9" whatever the locale's order of day and month. */
function localText(moment, precision) {
  const part = Object.fromEntries(
    FORMATS[precision].formatToParts(moment).map(({ type, value }) => [type, value]),
  );
  const day = `${part.year}-${part.month}-${part.day}`;
  if (precision === "date") return day;
  const clock = [part.hour, part.minute, part.second].filter(Boolean).join(":");
  return `${day} ${clock} ${part.timeZoneName}`;
}

export function showLocalTimes(root = document) {
  for (const time of root.querySelectorAll("time[datetime][data-precision]")) {
    const moment = new Date(time.getAttribute("datetime"));
    const precision = time.dataset.precision;
    if (Number.isNaN(moment.getTime()) || !(precision in FORMATS)) continue;
    if (!time.title) time.title = `${FULL.format(moment)} (${time.textContent})`;
    time.textContent = localText(moment, precision);
  }
}

showLocalTimes();
