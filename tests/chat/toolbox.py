"""A toolbox for the chat tests: the team's tools, answered in process.

The generation reaches tools only through `chatapp.chat.tooling.TOOLBOX`; this one stands in
for the team's MCP servers (tests/tools run the real ones).
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FakeTool:
    name: str
    needs_approval: bool = False
    timeout: float = 30.0
    description: str = ""

    def spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description or f"The {self.name} tool",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }


@dataclass(frozen=True)
class FakeResult:
    content: str
    is_error: bool
    elapsed: float


TOOLS = (
    FakeTool("get_weather"),
    FakeTool("create_ticket", needs_approval=True),
    FakeTool("slow_lookup", timeout=30.0),
    FakeTool("broken"),
    FakeTool("huge"),
    FakeTool("raw_bytes"),
)


@dataclass
class Toolbox:
    tools: tuple[FakeTool, ...] = TOOLS
    calls: list[tuple[str, dict]] = field(default_factory=list)
    running: int = 0
    cancelled: int = 0
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    teams_asked: list[int] = field(default_factory=list)

    def available_tools(self, team_id: int) -> list[FakeTool]:
        self.teams_asked.append(team_id)
        return list(self.tools)

    async def needs_approval(self, tool: FakeTool) -> bool:
        return tool.needs_approval

    async def call_tool(self, tool: FakeTool, arguments: dict, timeout: float) -> FakeResult:
        self.calls.append((tool.name, arguments))
        self.running += 1
        try:
            async with asyncio.timeout(timeout):  # as the team's MCP servers keep it
                return await self._answer(tool, arguments)
        finally:
            self.running -= 1

    async def _answer(self, tool: FakeTool, arguments: dict) -> FakeResult:
        started = time.monotonic()
        try:
            await asyncio.sleep(0)  # a call takes a turn of the loop at least, as a real one does
            if tool.name == "slow_lookup":
                self.slow_started.set()
                await asyncio.Event().wait()  # until the answer is stopped or times out
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if tool.name == "broken":
            return FakeResult("The server said: boom", True, time.monotonic() - started)
        if tool.name == "huge":
            return FakeResult("<b>x</b>" * 10_000, False, time.monotonic() - started)
        if tool.name == "raw_bytes":  # what a tool reading a binary file may send
            return FakeResult("PK\x03\x04\x00\x00 \ud800 end", False, 0.0)
        if tool.name == "create_ticket":
            return FakeResult("Ticket T-1 created", False, time.monotonic() - started)
        city = arguments.get("city", "nowhere")
        return FakeResult(f"Sunny in {city}", False, time.monotonic() - started)
