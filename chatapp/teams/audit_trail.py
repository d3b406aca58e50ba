"""Reading the audit trail as a whole: the hash chain check and the CSV / JSON export."""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

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


def verify_chain() -> tuple[int, ChainProblem | None]:
    """(events checked, the first broken one or None)."""
    previous = ""
    checked = 0
    for event in events_in_order():
        if event.prev_hash != previous:
            return checked, ChainProblem(
                event.pk,
                "its previous-hash does not match the event before it"
                " (an event was removed, inserted or edited before it)",
            )
        if event.compute_hash() != event.hash:
            return checked, ChainProblem(event.pk, "its content does not match its hash (edited)")
        previous = event.hash
        checked += 1
    return checked, None


def export_row(event: AuditEvent) -> dict:
    row = {name: getattr(event, name) for name in EXPORT_FIELDS}
    row["created_at"] = event.created_at.isoformat()
    return row


def export_json(stream: io.TextIOBase) -> int:
    """Write the whole trail as one JSON array (oldest first); returns the number of events."""
    count = 0
    stream.write("[")
    for event in events_in_order():
        stream.write(",\n" if count else "\n")
        stream.write(json.dumps(export_row(event), ensure_ascii=False))
        count += 1
    stream.write("\n]\n")
    return count


def export_csv(stream: io.TextIOBase) -> int:
    writer = spreadsheet_writer(stream, EXPORT_FIELDS)
    writer.writeheader()
    count = 0
    for event in events_in_order():
        row = export_row(event)
        row["details"] = json.dumps(row["details"], sort_keys=True, ensure_ascii=False)
        writer.writerow({name: spreadsheet_safe(value) for name, value in row.items()})
        count += 1
    return count


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


EXPORTERS = {"csv": export_csv, "json": export_json}
