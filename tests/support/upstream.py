"""A Llama API of a test's own: an OpenAI-compatible server on a loopback port that answers
every chat request with the reply the test queued, as no well-behaved server would."""

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Reply:
    body: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # Set: the body goes out an event (up to each blank line) at a time, this many seconds apart.
    pause: float | None = None


@asynccontextmanager
async def hostile_upstream(replies: list[Reply], headers_seen: list[dict] | None = None):
    """Serve the replies to the POST /v1/chat/completions requests in turn, the last one to
    every request after; yields the base URL. Each request's headers go to `headers_seen`."""
    served = 0

    async def chat(request: web.Request) -> web.StreamResponse:
        nonlocal served
        if headers_seen is not None:
            headers_seen.append(dict(request.headers))
        reply = replies[min(served, len(replies) - 1)]
        served += 1
        if reply.pause is not None:
            return await paced(request, reply)
        return web.Response(
            status=reply.status,
            body=reply.body.encode(),
            headers={"Content-Type": "text/event-stream", **reply.headers},
        )

    async def paced(request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(
            status=reply.status, headers={"Content-Type": "text/event-stream", **reply.headers}
        )
        await response.prepare(request)
        try:
            for event in reply.body.split("\n\n"):
                if event:
                    await response.write(f"{event}\n\n".encode())
                    await asyncio.sleep(reply.pause)
            await response.write_eof()
        except ConnectionResetError:  # the client gave up on it
            pass
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()
