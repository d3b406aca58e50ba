"""An ASGI app for tests/core/test_text_frames.py: each text it receives names a message for it
to send back, `text <size>` or `bytes <size>`; `close` closes the socket."""


def message_of(size: int) -> str:
    """`size` characters, some of them two or three bytes in UTF-8."""
    return ("tok é € " * (size // 8 + 1))[:size]


async def application(scope, receive, send):
    if scope["type"] != "websocket":
        raise ValueError(f"websockets only, not {scope['type']}")
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        kind, _, size = message["text"].partition(" ")
        if kind == "close":
            await send({"type": "websocket.close", "code": 4321})
        elif kind == "text":
            await send({"type": "websocket.send", "text": message_of(int(size))})
        else:
            await send({"type": "websocket.send", "bytes": message_of(int(size)).encode()})
