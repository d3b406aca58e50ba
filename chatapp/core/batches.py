"""Rows read a batch at a time: an export of any size holds one batch in memory."""

from collections.abc import Iterator

from django.db.models import QuerySet


def batches(rows: QuerySet, size: int) -> Iterator[list]:
    """The rows, in their order, `size` at a time, each batch read when its turn comes. Which
    rows is settled at the start (their ids); one deleted meanwhile is not in its batch."""
    pks = list(rows.values_list("pk", flat=True))
    for start in range(0, len(pks), size):
        yield list(rows.filter(pk__in=pks[start : start + size]))
