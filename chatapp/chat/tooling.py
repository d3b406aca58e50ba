"""The tools an answer may call, and how one call's result goes back to the model.

An answer lists the team's tools when it is admitted (`replies.admit_send`, in the database
thread) and the generation calls them through the toolbox;
the toolbox is the team's MCP servers (`chatapp.tools`), and tests may put another in.
A tool's result is untrusted text: it is cut to a size and only ever goes upstream as a
`tool` message, never into the system prompt.
"""

import json
import math
from dataclasses import dataclass
from typing import Any, Protocol

from chatapp.core.text import storable
from chatapp.llm import count_tokens_estimate
from chatapp.tools import registry

MAX_TOOL_ROUNDS = 8  # model turns that may call tools in one answer; the next must answer
MAX_TURN_CALLS = 32  # calls of one turn that run (and go back upstream); the rest are dropped
TOOL_LOOP_SECONDS = 600.0  # one answer's tool calls all finish within this
APPROVAL_SECONDS = 600.0  # an unanswered approval counts as denied after this
# Past a call's timeout, for a toolbox that does not keep it; the team's MCP servers do.
CALL_GRACE_SECONDS = 5.0
RESULT_MAX_CHARS = 16_000  # of one tool result, kept and sent back to the model
# Of a call's id as the model gave it: the page names the call in a decision frame, which
# takes at most frames.CALL_ID_LENGTH characters, suffix for uniqueness included.
CALL_ID_CHARS = 100
DECLINED = "The user declined this call."
STOPPED = "The call was stopped before it finished."


class OfferedTool(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def needs_approval(self) -> bool: ...
    @property
    def timeout(self) -> float: ...
    def spec(self) -> dict[str, Any]: ...


class CallOutcome(Protocol):
    @property
    def content(self) -> str: ...
    @property
    def is_error(self) -> bool: ...
    @property
    def elapsed(self) -> float: ...


class Toolbox(Protocol):
    def available_tools(self, team_id: int) -> list[Any]: ...  # in the database thread
    async def needs_approval(self, tool: Any) -> bool: ...  # as it stands now
    # Within timeout seconds: a call answered in time keeps its answer, however its end goes.
    async def call_tool(
        self, tool: Any, arguments: dict[str, Any], timeout: float
    ) -> CallOutcome: ...


TOOLBOX: Toolbox = registry  # the team's MCP servers


def use_toolbox(toolbox: Toolbox) -> Toolbox:
    """Put another toolbox in (tests); returns the one it replaced."""
    global TOOLBOX
    previous, TOOLBOX = TOOLBOX, toolbox
    return previous


def described_tokens(specs: list[dict[str, Any]] | tuple[dict[str, Any], ...] | None) -> int:
    """The tools' descriptions go upstream with the messages of every turn that offers them,
    and the provider bills them as prompt: their estimated tokens."""
    return count_tokens_estimate(json.dumps(list(specs))) if specs else 0


def tools_for(team_id: int, enabled: bool) -> list[OfferedTool]:
    """The tools to offer in a conversation: none when it turned them off. Reads the database."""
    return list(TOOLBOX.available_tools(team_id)) if enabled else []


@dataclass(frozen=True)
class Outcome:
    content: str
    is_error: bool
    elapsed: float


def capped(content: str) -> str:
    """A result as kept and sent upstream: storable text, cut to RESULT_MAX_CHARS."""
    content = storable(content)
    if len(content) <= RESULT_MAX_CHARS:
        return content
    cut = len(content) - RESULT_MAX_CHARS
    return content[:RESULT_MAX_CHARS] + f"\n[The tool's result was cut: {cut:,} more characters]"


def parse_arguments(text: str) -> dict[str, Any] | None:
    """The model's argument text as an object, or None when it is not one. Python reads NaN,
    Infinity and numbers too large for a float (1e400) where JSON has no such values: the tool
    server would get them as null (or refuse the request), so they are not an object either."""
    try:
        value = json.loads(text or "{}", parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a number")
    return number


def unfinished(call: dict[str, Any]) -> dict[str, Any]:
    """A call an answer's end left without a result (stopped, or its server went away)."""
    if call.get("status") == "done":
        return call
    return {**call, "status": "done", "content": STOPPED, "is_error": True}


def upstream_messages(content: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stored answer with tool calls as the model saw it: per round, the assistant message
    holding the calls and one `tool` message per call; then the text after the last round."""
    messages: list[dict[str, Any]] = []
    rounds: dict[int, list[dict[str, Any]]] = {}
    for call in calls:
        rounds.setdefault(int(call.get("round", 0)), []).append(unfinished(call))
    start = 0
    for _, round_calls in sorted(rounds.items()):
        offset = min(max(start, int(round_calls[0].get("offset", start))), len(content))
        messages.append(
            {
                "role": "assistant",
                "content": content[start:offset],
                "tool_calls": [call_spec(c["id"], c["name"], c["arguments"]) for c in round_calls],
            }
        )
        messages.extend(result_message(c["id"], c.get("content") or "") for c in round_calls)
        start = offset
    if content[start:] or not messages:
        messages.append({"role": "assistant", "content": content[start:]})
    return messages


def client_calls(content: str, calls: tuple[dict[str, str], ...]) -> tuple[dict[str, Any], ...]:
    """The calls an API client ran itself, with their results, as a stored answer keeps its
    calls: one round, after the turn's text."""
    return tuple({**call, "round": 0, "offset": len(content), "status": "done"} for call in calls)


def call_spec(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def result_message(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}
