"""The `local_time` filter: every rendered date-time as a `<time>` in UTC, saying so."""

from datetime import UTC, datetime, timedelta, timezone

from django.template import Context, Template


def render(moment, precision: str | None = None) -> str:
    argument = f':"{precision}"' if precision else ""
    return Template("{% load times %}{{ moment|local_time" + argument + " }}").render(
        Context({"moment": moment})
    )


def test_a_time_in_another_zone_is_shown_in_utc_and_says_so():
    tokyo = timezone(timedelta(hours=9))
    assert render(datetime(2026, 12, 6, 18, 0, 30, 123456, tzinfo=tokyo)) == (
        '<time datetime="2026-12-06T09:00:30+00:00" data-precision="minutes">'
        "2026-12-06 09:00 UTC</time>"
    )


def test_seconds_and_days():
    moment = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert "2026-12-31 23:59:58 UTC</time>" in render(moment, "seconds")
    assert 'data-precision="date">2026-12-31 UTC</time>' in render(moment, "date")


def test_no_time_renders_nothing():
    assert render(None) == ""
