"""Reading the audit trail: its pages (the site's and a team's), the hash chain check and the CSV /
JSON export."""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from django.db.models import QuerySet

from chatapp.teams.models import AuditEvent

EXPORT_FIELDS = (
    "id",
    "created_at",
    "team_id",
    "team_name",
    "actor_id",
    "actor_name",
    "action",
    "summary",
    "details",
    "prev_hash",
    "hash",
)


def events_in_order() -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("id").iterator(chunk_size=2000)


@dataclass
class ChainProblem:
    event_id: int
    reason: str


# The site's audit page checks the newest events on every view; the whole chain on demand
# and with `manage.py audit_verify` (reading it all grows with the trail).
RECENT_EVENTS = 1000


def verify_chain() -> tuple[int, ChainProblem | None]:
    """(events checked, the first broken one or None)."""
    checked, problem, _ = check_whole_chain()
    return checked, problem


def check_whole_chain() -> tuple[int, ChainProblem | None, AuditEvent | None]:
    """(events checked, the first broken one or None, the newest event checked)."""
    return _verify(events_in_order(), "")


def verify_recent(count: int) -> tuple[int, ChainProblem | None, bool]:
    """The newest `count` events, and the link of the oldest of them to the event before it
    (or to nothing, when it is the first); fewer events than that: the whole chain. The last
    value says whether older events were left unread."""
    newest = list(AuditEvent.objects.order_by("-id")[: count + 1])
    newest.reverse()
    if len(newest) <= count:
        checked, problem, _ = _verify(newest, "")
        return checked, problem, False
    checked, problem, _ = _verify(newest[1:], newest[0].hash)
    return checked, problem, True


PAGE_SIZE = 50
LARGEST_ID = 2**63 - 1  # a bigint's


@dataclass
class EventPage:
    """Some events, newest first, and whether there are newer and older ones."""

    events: list[AuditEvent]
    newer: bool
    older: bool


def event_page(
    before: str | None, after: str | None, events: QuerySet[AuditEvent] | None = None
) -> EventPage:
    """The events just older than event `before`, or just newer than event `after`, or the
    newest, of `events` (the site's by default): found by id rather than by counting, so a
    page costs the same with a million events. An `after` with less than a page newer than it
    gives the newest page; an id that is not a whole number, none."""
    if events is None:
        events = AuditEvent.objects.all()
    newer_id = _event_id(after)
    if newer_id is not None:
        rows = list(events.filter(pk__gt=newer_id).order_by("pk")[: PAGE_SIZE + 1])
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE][::-1]
            return EventPage(rows, True, _any(events.filter(pk__lt=rows[-1].pk)))
    older_id = _event_id(before)
    older = events if older_id is None else events.filter(pk__lt=older_id)
    rows = list(older.order_by("-pk")[: PAGE_SIZE + 1])
    newer = older_id is not None and bool(rows) and _any(events.filter(pk__gt=rows[0].pk))
    return EventPage(rows[:PAGE_SIZE], newer, len(rows) > PAGE_SIZE)


def _any(events: QuerySet[AuditEvent]) -> bool:
    # Asked in id order, which an index gives: unordered, PostgreSQL may look for a team's
    # newer events by reading the whole table from its oldest rows.
    return events.order_by("pk").values_list("pk", flat=True).first() is not None


def _event_id(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if 0 < number <= LARGEST_ID else None


def _verify(
    events: Iterable[AuditEvent], previous: str
) -> tuple[int, ChainProblem | None, AuditEvent | None]:
    checked, last = 0, None
    for event in events:
        if event.prev_hash != previous:
            return (
                checked,
                ChainProblem(
                    event.pk,
                    "its previous-hash does not match the event before it"
                    " (an event was removed, inserted or edited before it)",
                ),
                last,
            )
        if event.compute_hash() != event.hash:
            problem = ChainProblem(event.pk, "its content does not match its hash (edited)")
            return checked, problem, last
        previous, last = event.hash, event
        checked += 1
    return checked, None, last


def export_row(event: AuditEvent) -> dict:
    row = {name: getattr(event, name) for name in EXPORT_FIELDS}
    row["created_at"] = event.created_at.isoformat()
    return row


def write_export(format: str, stream: io.TextIOBase | TextIO) -> int:
    """Write the whole trail (oldest first) to `stream`; returns the number of events."""
    count = 0

    def counted() -> Iterator[AuditEvent]:
        nonlocal count
        for event in events_in_order():
            count += 1
            yield event

    stream.writelines(EXPORTERS[format](counted()))
    return count


def export_chunks(format: str, size: int = 64 * 1024) -> Iterator[bytes]:
    """The whole trail (oldest first) as UTF-8, in chunks of about `size` bytes."""
    pieces: list[str] = []
    length = 0
    for piece in EXPORTERS[format](events_in_order()):
        pieces.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(pieces).encode()
            pieces, length = [], 0
    yield "".join(pieces).encode()


def json_pieces(events: Iterable[AuditEvent]) -> Iterator[str]:
    """One JSON array, an event per line."""
    yield "["
    separator = "\n"
    for event in events:
        yield separator + json.dumps(export_row(event), ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


def csv_pieces(events: Iterable[AuditEvent]) -> Iterator[str]:
    line = io.StringIO()
    writer = spreadsheet_writer(line, EXPORT_FIELDS)
    writer.writeheader()
    for event in events:
        row = export_row(event)
        row["details"] = json.dumps(row["details"], sort_keys=True, ensure_ascii=False)
        writer.writerow({name: spreadsheet_safe(value) for name, value in row.items()})
        yield _taken(line)
    yield _taken(line)  # the header alone when there are no events


def _taken(line: io.StringIO) -> str:
    text = line.getvalue()
    line.seek(0)
    line.truncate()
    return text


def spreadsheet_writer(stream, fields) -> csv.DictWriter:
    """Every cell in double quotes (OWASP's advice): a spreadsheet that splits on ";" (the list
    separator in many locales) would otherwise start a new cell, maybe a formula, inside one."""
    return csv.DictWriter(stream, fieldnames=fields, quoting=csv.QUOTE_ALL)


def spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (the JSON
    export keeps the exact text, which is what the hashes cover)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


EXPORTERS = {"csv": csv_pieces, "json": json_pieces}
