"""An ASGI app for tests/core/test_text_frames.py: each text it receives names a message for it
to send back, `text <size>` or `bytes <size>`; `close` closes the socket."""


def message_of(size: int) -> str:
    """Text of exactly `size` bytes in UTF-8, some of its characters two or three bytes long."""
    pattern = "tok é € ".encode()
    text = (pattern * (size // len(pattern) + 1))[:size].decode(errors="ignore")  # no cut char
    return text + "." * (size - len(text.encode()))


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
