"""Every frame a test socket receives is checked against the server event schema.

Loaded as a plugin by tests/conftest.py. `EMITTED` collects the event types seen, so
tests/chat/test_event_schema.py can tell that every type in the schema was sent by some test;
that check runs last in the session.
"""

import json
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator

from chatapp.chat import events
from chatapp.chat.event_schema import check_event

EMITTED: set[str] = set()
COLLECTED_FILES: set[Path] = set()
RUN_LAST = "event_coverage"


@pytest.fixture(autouse=True, scope="session")
def server_events_match_their_schema():
    # The validators are built on first use: build them now, not in the middle of a stream.
    check_event(events.error(None, "invalid_frame", "Checking the checker."))
    original = WebsocketCommunicator.receive_from

    async def receive_from(self, timeout=1):
        data = await original(self, timeout)
        if isinstance(data, str):
            EMITTED.add(check_event(json.loads(data)))
        return data

    WebsocketCommunicator.receive_from = receive_from
    yield
    WebsocketCommunicator.receive_from = original


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{RUN_LAST}: runs after every other test (it reads what they emitted)"
    )


def pytest_collection_modifyitems(items):
    COLLECTED_FILES.update(Path(item.fspath) for item in items)
    last = [item for item in items if item.get_closest_marker(RUN_LAST)]
    items[:] = [item for item in items if not item.get_closest_marker(RUN_LAST)] + last
