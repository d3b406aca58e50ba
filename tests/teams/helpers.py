import asyncio

from chatapp.llm import ChatParams, Finish, StreamError, TextDelta


def ask(client, text: str = "Hello", model: str = "Llama-3.3-8B-Instruct") -> list:
    """Stream one answer through a LlamaClient, from sync test code."""

    async def run():
        messages = [{"role": "user", "content": text}]
        return [event async for event in client.stream_chat(messages, ChatParams(model))]

    return asyncio.run(run())


def finished(events: list) -> bool:
    return isinstance(events[-1], Finish)


def failure(events: list) -> StreamError:
    assert isinstance(events[-1], StreamError), events[-1]
    return events[-1]


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))
