"""The server process writes a websocket text message's frame itself, byte for byte as autobahn
would, and leaves every other message to daphne."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from chatapp.core.server import sends_as_text_frame, text_frame, wrote_text_at_once
from tests.core.text_frames_app import message_of
from tests.deploy.files import ROOT
from tests.support.ports import listening_socket

# Sizes in bytes on each side of the frame header's three length forms (up to 125, 126-65535,
# 65536 and up).
SIZES = (1, 125, 126, 127, 65535, 65536, 100_000)
DAPHNE_MESSAGE_LIMIT = 2**20  # daphne's --websocket_max_message_size default
STARTING_SECONDS = 60  # a server process imports daphne, Twisted and uvloop first


def open_socket(**options) -> tuple[WebSocketServerProtocol, StringTransport]:
    """An open server-side autobahn socket as daphne configures it, writing into memory."""
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(
        openHandshakeTimeout=0, maxMessagePayloadSize=DAPHNE_MESSAGE_LIMIT, **options
    )
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state = protocol.STATE_OPEN
    return protocol, transport


def server_with(protocol, **connection) -> SimpleNamespace:
    """What `wrote_text_at_once` reads of daphne's server: its connections."""
    return SimpleNamespace(connections={protocol: {"connected": 0.0, **connection}})


@pytest.mark.parametrize("size", SIZES)
def test_a_text_frame_is_what_autobahn_sends_for_the_same_text(size):
    protocol, transport = open_socket()
    payload = message_of(size).encode()
    assert len(payload) == size
    protocol.sendMessage(payload)
    assert text_frame(payload) == transport.value()


@pytest.mark.parametrize("size", SIZES)
def test_a_text_message_on_an_open_socket_is_written_as_autobahn_writes_it(size):
    protocol, transport = open_socket()
    text = message_of(size)
    message = {"type": "websocket.send", "text": text}
    assert wrote_text_at_once(server_with(protocol), protocol, message)
    by_autobahn, written = open_socket()
    by_autobahn.sendMessage(text.encode())
    assert transport.value() == written.value()


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "bytes": b"binary"},
        {"type": "websocket.send", "text": "", "bytes": b"binary"},
        {"type": "websocket.send", "text": "both", "bytes": b"both"},  # daphne refuses it
        {"type": "websocket.send", "text": ""},  # daphne sends nothing
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 1000},
    ],
)
def test_every_other_message_is_left_to_daphne(message):
    protocol, transport = open_socket()
    assert not wrote_text_at_once(server_with(protocol), protocol, message)
    assert transport.value() == b""


def test_a_message_for_a_closed_connection_is_dropped_as_daphne_drops_it():
    protocol, transport = open_socket()
    for server in (server_with(protocol, disconnected=1.0), SimpleNamespace(connections={})):
        assert wrote_text_at_once(server, protocol, {"type": "websocket.send", "text": "late"})
    assert transport.value() == b""


def compressing(protocol):
    protocol._perMessageCompress = object()  # permessage-deflate agreed at the handshake


def closing(protocol):
    protocol.state = protocol.STATE_CLOSING


def queueing(protocol):
    protocol.send_queue.append((b"a frame autobahn holds back", True))


@pytest.mark.parametrize("change", [compressing, closing, queueing])
def test_a_text_autobahn_would_not_send_as_one_plain_frame_is_left_to_daphne(change):
    protocol, transport = open_socket()
    change(protocol)
    assert not sends_as_text_frame(protocol, 10)
    assert not wrote_text_at_once(
        server_with(protocol), protocol, {"type": "websocket.send", "text": "x"}
    )
    assert transport.value() == b""


def test_masked_fragmented_and_oversized_messages_are_left_to_daphne():
    assert sends_as_text_frame(open_socket()[0], DAPHNE_MESSAGE_LIMIT)
    assert not sends_as_text_frame(open_socket()[0], DAPHNE_MESSAGE_LIMIT + 1)
    assert not sends_as_text_frame(open_socket(maskServerFrames=True)[0], 10)
    assert sends_as_text_frame(open_socket(autoFragmentSize=100)[0], 100)
    assert not sends_as_text_frame(open_socket(autoFragmentSize=100)[0], 101)


# ---- the server process, end to end ---------------------------------------------------------


@pytest.fixture(scope="module")
def server_url():
    """`python -m chatapp.core.server` serving tests/core/text_frames_app.py on a loopback port.

    The port listens before the server starts: a client's handshake waits in its backlog."""
    listener = listening_socket()
    command = ["-m", "chatapp.core.server", "--fd", str(listener.fileno())]
    process = subprocess.Popen(
        [sys.executable, *command, "tests.core.text_frames_app:application"],
        cwd=ROOT,
        pass_fds=[listener.fileno()],
    )
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()  # the server holds its own copy
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def client(url: str, **options):
    return connect(url, open_timeout=STARTING_SECONDS, **options)


def test_a_client_reads_every_text_and_binary_message_the_server_sends(server_url):
    with client(server_url, max_size=None) as websocket:
        for size in SIZES:
            websocket.send(f"text {size}")
            assert websocket.recv(timeout=10) == message_of(size)
            websocket.send(f"bytes {size}")
            assert websocket.recv(timeout=10) == message_of(size).encode()


def test_a_close_from_the_app_still_reaches_the_client(server_url):
    with client(server_url) as websocket:
        websocket.send("text 5")
        assert websocket.recv(timeout=10) == message_of(5)
        websocket.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4321
