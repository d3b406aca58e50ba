"""`{{ moment|local_time }}`: a date-time as `<time datetime="…+00:00">2026-12-06 09:00 UTC</time>`.
The page's script (static/js/local-times.js) shows it in the viewer's own time zone; without
scripts it still says plainly that it is UTC."""

from datetime import UTC, datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

FORMATS = {"minutes": "%Y-%m-%d %H:%M", "seconds": "%Y-%m-%d %H:%M:%S", "date": "%Y-%m-%d"}


@register.filter
def local_time(moment: datetime | None, precision: str = "minutes") -> SafeString | str:
    """`precision`: "minutes" (the default), "seconds", or "date" (the day alone)."""
    if moment is None:
        return ""
    utc = moment.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-precision="{}">{} UTC</time>',
        utc.isoformat(timespec="seconds"),
        precision,
        utc.strftime(FORMATS[precision]),
    )
