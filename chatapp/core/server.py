"""daphne on uvloop's event loop: `python -m chatapp.core.server` takes daphne's own arguments.

Every relayed token is a few event-loop wake-ups (the upstream read, the socket's send), and
uvloop's loop costs about half of asyncio's own per wake-up: bench/README.md has the figures.
daphne creates its Twisted reactor's loop when `daphne.server` is first imported, so the
policy is set before that import. Where uvloop is not installed (it has no Windows build),
daphne runs on asyncio's loop as before.

Twisted buffers every write and sends it on the loop's next turn, registering the socket for
writing and unregistering it again each time: two `epoll_ctl` calls and a turn of the loop
for each websocket frame. `EagerTCPServer` sends at once when nothing is waiting to go before
it.

autobahn (daphne's websocket protocol) formats the arguments of a debug log line for every
frame it sends, with terminal colors, whether debug logging is on or not; `plain_debug_values`
has it pass them on as they are.

A websocket text message sent through ASGI goes through daphne's `handle_reply` twice (server
and protocol), its `serverSend`, and autobahn's `sendMessage`, `sendFrame` and `sendData`
(asserts, traffic counters, two debug-log calls) before one write of one frame: about a tenth
of the server's CPU per relayed token. `send_text_at_once` has daphne write that frame itself,
byte for byte what autobahn would write, whenever autobahn would write it that way; anything
else (compression, a close under way, bytes, a size past the limit) goes daphne's way.

On SIGTERM or SIGINT, what the apps registered with `chatapp.core.stopping` runs before the
reactor stops (`finish_before_exit`): the answers the process streams are saved and ended.
When they could not all be (`stopping.finished`), the process exits with
`stopping.STOP_UNFINISHED`, not 0, so that its supervisor ends them as it does a crashed
process's.

A process `manage.py serve` started first checks that the supervisor which started it is still
its parent (`processes.supervisor_gone`) and exits otherwise: a supervisor killed before the
process's death signal was armed would leave it serving on, orphaned.

The cyclic garbage collector runs less often (`collect_less_often`): with Python's thresholds it
made four full passes of 24–86 ms during the arrival of 200 answers, each a pause of every
stream of the process.

A request body larger than any address takes is refused as it arrives (`chatapp.core.bodies`).
"""

import asyncio
import gc
import sys
from typing import Any

from twisted.internet import tcp, unix

from chatapp.core import bodies, processes, stopping


class EagerTCPServer(tcp.Server):
    """A connection that writes straight to its socket when nothing is queued before the data.

    What the socket does not take at once (a full send buffer, an error) is queued as before,
    and the reactor's turn for writing sends it or finds the connection lost, as it always did:
    no protocol callback runs from inside `write`. TLS writes go through TLS as before.
    """

    def write(self, data: bytes) -> None:
        if (
            data
            and not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
        ):
            sent = self.writeSomeData(data)
            if isinstance(sent, int) and sent == len(data):
                return
            if isinstance(sent, int) and sent > 0:
                data = data[sent:]
            # else nothing went: it is all queued, and the reactor's write finds out why
        super().write(data)


class EagerUNIXServer(EagerTCPServer, unix.Server):
    pass


def use_eager_writes() -> None:
    """Make connections accepted from now on write at once (daphne's TCP, fd and UNIX ports)."""
    tcp.Port.transport = EagerTCPServer
    unix.Port.transport = EagerUNIXServer


def plain_debug_values() -> None:
    """Make autobahn's debug-log arguments the values themselves, not colored text.

    Each frame sent built three (`hltype`, `hlval`: names looked up, click's terminal styles)
    for a line the logger then drops: about 5% of the server loop's samples at 200 answers
    (bench/README.md). With debug logging on, the lines show the same values uncolored.
    """
    from autobahn.twisted import websocket
    from autobahn.websocket import protocol

    for module in (protocol, websocket):
        module.hltype = module.hlval = _as_is  # type: ignore[attr-defined]


def _as_is(value: object, *args: object, **kwargs: object) -> object:
    return value


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame (RFC 6455 5.2): a server's text message."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


def sends_as_text_frame(protocol: Any, size: int) -> bool:
    """Whether autobahn would send a text message of `size` bytes as one `text_frame`, now.

    Not while the socket opens or closes, with per-message compression, with anything in
    autobahn's own send queue, with masked or fragmented server frames, or past the message
    size limit (autobahn refuses it; so does daphne's path, which the caller takes then).
    """
    return (
        protocol.state == protocol.STATE_OPEN
        and protocol._perMessageCompress is None
        and not protocol.send_queue
        and not protocol.maskServerFrames
        and not 0 < protocol.autoFragmentSize < size
        and not 0 < protocol.maxMessagePayloadSize < size
    )


def wrote_text_at_once(server: Any, protocol: Any, message: dict[str, Any]) -> bool:
    """Write an ASGI `websocket.send` of text to its connection as one frame; False to leave it
    to daphne (any other message, or a frame autobahn would not send as `text_frame`).

    daphne's own rules hold: a closed connection's messages are dropped, empty text is not
    sent, a message with both text and bytes is refused (by daphne).
    """
    if message["type"] != "websocket.send" or message.get("bytes"):
        return False
    text = message.get("text")
    if not text:
        return False
    connection = server.connections.get(protocol)
    if connection is None or "disconnected" in connection:
        return True  # daphne drops it
    payload = text.encode("utf8")
    if not sends_as_text_frame(protocol, len(payload)):
        return False
    protocol.transport.write(text_frame(payload))
    return True


def send_text_at_once() -> None:
    """Have daphne's ASGI send write a text message's frame itself (`wrote_text_at_once`)."""
    from daphne.server import Server  # after the loop policy: it makes the reactor's loop

    daphne_reply = Server.handle_reply

    async def handle_reply(self: Server, protocol: Any, message: dict[str, Any]) -> None:
        if not wrote_text_at_once(self, protocol, message):
            await daphne_reply(self, protocol, message)

    Server.handle_reply = handle_reply


# A young pass after 20,000 new container objects, not 700; an old pass after 100 middle ones,
# not 10. Objects freed by their reference count (nearly all of a token's) never wait for it.
GC_THRESHOLDS = (20_000, 10, 100)


def collect_less_often() -> None:
    """Give the collector the server's thresholds (bench/README.md has the passes, before and
    after): fewer, larger young passes, and full passes rare enough that none falls in a burst
    of answers. Cyclic garbage waits longer for its pass; none of it is kept for good."""
    gc.set_threshold(*GC_THRESHOLDS)


def finish_before_exit() -> None:
    """Have the reactor await the apps' stopping hooks before it stops (daphne's own trigger,
    which cancels the open connections' applications, runs beside them)."""
    from twisted.internet import defer, reactor  # after daphne.server installed the reactor

    def run_hooks() -> defer.Deferred:
        # Said at once, before daphne's trigger cancels the sockets' consumers: those the
        # hooks still tell of their answers' end stay registered (chatapp.chat.consumers).
        stopping.begin()
        return defer.Deferred.fromFuture(asyncio.ensure_future(stopping.run_hooks()))

    installed: Any = reactor  # Twisted types the module as the IReactorCore interface itself
    installed.addSystemEventTrigger("before", "shutdown", run_hooks)


def use_uvloop() -> bool:
    """Make new event loops uvloop's; False where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> None:
    if processes.supervisor_gone():
        sys.stderr.write("The supervisor that started this server process has exited: stopping.\n")
        raise SystemExit(1)
    use_uvloop()
    use_eager_writes()
    plain_debug_values()
    collect_less_often()
    send_text_at_once()
    from daphne.cli import CommandLineInterface  # imports daphne.server: after the policy

    bodies.refuse_large_bodies()
    finish_before_exit()
    CommandLineInterface.entrypoint()
    if not stopping.finished():
        sys.stderr.write("The answers of this server process were not all saved as it stopped.\n")
        raise SystemExit(stopping.STOP_UNFINISHED)


if __name__ == "__main__":
    main()
