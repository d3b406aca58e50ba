"""The server's connections write at once when nothing is queued, and queue the rest in order."""

import socket

import pytest
from twisted.internet import main
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor

from chatapp.core.server import EagerTCPServer


@pytest.fixture
def pair():
    """A connected loopback TCP pair: the server's end and the peer's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        own, _ = listener.accept()
    yield own, peer
    own.close()
    peer.close()


def connection(sock: socket.socket) -> tuple[EagerTCPServer, MemoryReactor]:
    reactor = MemoryReactor()
    return EagerTCPServer(sock, Protocol(), ("127.0.0.1", 1), None, 1, reactor), reactor


def received(peer: socket.socket, size: int) -> bytes:
    peer.settimeout(5)
    data = b""
    while len(data) < size:
        data += peer.recv(size - len(data))
    return data


def test_a_write_goes_to_the_socket_without_waiting_for_the_reactor(pair):
    own, peer = pair
    transport, reactor = connection(own)
    transport.write(b"first frame")
    transport.write(b"second frame")
    assert reactor.getWriters() == []
    assert received(peer, 23) == b"first framesecond frame"


def test_what_the_socket_does_not_take_is_queued_and_later_writes_keep_their_order(pair):
    own, peer = pair
    own.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    transport, reactor = connection(own)
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes at once
    transport.write(big)
    assert reactor.getWriters() == [transport]
    transport.write(b"after")  # queued behind the rest, not sent ahead of it
    expected = big + b"after"
    data = b""
    peer.settimeout(5)
    while len(data) < len(expected):
        data += peer.recv(65536)
        assert transport.doWrite() is None
    assert data == expected
    assert reactor.getWriters() == []


def test_a_write_to_a_lost_connection_is_left_for_the_reactor_to_find(pair):
    own, peer = pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # a reset: the next send fails
    transport, reactor = connection(own)
    transport.write(b"x" * 100)  # may go into the buffer before the reset is seen
    transport.write(b"into a reset connection")
    assert reactor.getWriters() == [transport]
    assert transport.doWrite() is main.CONNECTION_LOST


def test_autobahn_passes_its_debug_log_values_on_without_coloring_them(monkeypatch):
    """Sending a frame formats its debug line's arguments whether the line is logged or not."""
    import click
    from autobahn.twisted import websocket
    from autobahn.websocket import protocol

    from chatapp.core.server import plain_debug_values

    def styled(*args, **kwargs):
        raise AssertionError("click.style ran")

    for module in (protocol, websocket):  # put back after the test
        monkeypatch.setattr(module, "hltype", module.hltype)
        monkeypatch.setattr(module, "hlval", module.hlval)
    monkeypatch.setattr(click, "style", styled)
    plain_debug_values()

    method = protocol.WebSocketProtocol.sendData
    assert protocol.hltype(method) is method
    assert protocol.hlval(1234) == 1234
    assert websocket.hlval("peer") == "peer"


def test_the_server_runs_the_collectors_passes_less_often():
    import gc

    from chatapp.core.server import GC_THRESHOLDS, collect_less_often

    before = gc.get_threshold()
    try:
        collect_less_often()
        young, middle, old = gc.get_threshold()
        assert (young, middle, old) == GC_THRESHOLDS
        assert young > 700 and old > 10  # Python's own: a young pass every 700, a full every 10
    finally:
        gc.set_threshold(*before)
