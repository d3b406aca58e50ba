"""Calendar helpers shared by the usage pages and the quota checks."""

from datetime import date, datetime, time, timedelta

from django.utils import timezone


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def first_instant(day: date) -> datetime:
    """Midnight at the start of `day`, in the site's time zone (as `__date` lookups read it)."""
    return timezone.make_aware(datetime.combine(day, time.min))
