"""Directives: what a test asks the simulator to do with one request.

A directive is `[sim:NAME OPTION=VALUE ...]` inside the last user message, or the same text
(several separated by `;`) in an `X-Sim-Fault` header. See the package docstring for the list.
"""

import json
import re
from dataclasses import dataclass

DIRECTIVE = re.compile(r"\[sim:([^\]]*)\]")
STREAM_FAULTS = ("cut", "stall", "stall_after", "error_after")
OTHER_FAULTS = ("context_too_long",)
NUMBER_OPTIONS = {
    "after": int,
    "times": int,
    "tokens": int,
    "tps": float,
    "ttft": float,
    "retry_after": float,
    "retry_after_ms": float,
    "pad": int,
    "at": int,
    "guard_delay": float,
    "rounds": int,
    "title_fault": int,
}
FLAG_OPTIONS = (
    "anyway",
    "same_ids",
    "long_ids",
    "preface",
    "long",
    "pace",
    "flag",
    "flag_answer",
    "flag_image",
    "echo_auth",
    "stamp",
    "bad_json",
    "off_schema",
)
TEXT_OPTIONS = ("fault", "categories", "guard_fault", "call", "args")
DEFAULT_LONG_TOKENS = 2000
# [sim:stamp]: the send time that starts each streamed chunk's text, as ⟦1764520000.123456⟧.
STAMP_OPEN, STAMP_CLOSE = "\u27e6", "\u27e7"


class DirectiveError(ValueError):
    pass


@dataclass(frozen=True)
class Plan:
    fault: str | None = None  # an HTTP status ("429"), a stream fault, or "context_too_long"
    after: int = 0  # tokens sent before a cut, stall_after or error_after
    times: int | None = None  # the fault applies to the first N identical requests only
    retry_after: float | None = None
    retry_after_ms: float | None = None
    long_tokens: int | None = None
    tps: float | None = None
    ttft: float | None = None
    flag_categories: tuple[str, ...] = ()  # moderations: the question is flagged with these
    answer_categories: tuple[str, ...] = ()  # moderations: the answer is flagged with these
    answer_flagged_at: int = 0  # ... once it is at least this many tokens long
    image_categories: tuple[str, ...] = ()  # moderations: the question, if it has an image
    guard_fault: int | None = None  # moderations (and the Guard model) fail with this status
    guard_delay: float | None = None  # moderations answer after this many seconds
    echo_auth_after: int | None = None  # an error detail echoing the Authorization header
    stamp: bool = False  # each streamed chunk starts with its send time (bench: lag per token)
    call: str | None = None  # [sim:call=NAME args=k:v,k:v]: the model calls this tool first
    call_args: str = "{}"  # the call's arguments as a JSON object text
    rounds: int = 1  # how many turns in a row the model calls tools before answering
    title_fault: int | None = None  # a request for the conversation's title fails with this
    anyway: bool = False  # call the tools even when the request offers none (a bad server)
    same_ids: bool = False  # call ids numbered per turn (call_0, ...), the same every turn
    long_ids: bool = False  # call ids of 300 characters, as no client should have to carry
    preface: bool = False  # a turn that calls tools says PREFACE first, as models often do

    @property
    def calls(self) -> tuple[str, ...]:
        """call=a+b: the tools called together in one turn (in parallel)."""
        return tuple(filter(None, (self.call or "").split("+")))

    bad_json: bool = False  # with response_format: an answer that does not parse
    off_schema: bool = False  # with response_format: JSON that breaks the schema

    @property
    def status(self) -> int | None:
        return int(self.fault) if self.fault and self.fault.isdigit() else None


def plan_from(header: str | None, text: str) -> Plan:
    """Merge the directives of the header and the message text into one plan."""
    options: dict[str, str] = {}
    for directive in [*(header or "").split(";"), *DIRECTIVE.findall(text)]:
        options.update(_parse_directive(directive))
    return _build_plan(options)


def strip_directives(text: str) -> str:
    return " ".join(DIRECTIVE.sub(" ", text).split())


def _parse_directive(directive: str) -> dict[str, str]:
    options = {}
    for word in directive.split():
        name, _, value = word.partition("=")
        if name not in NUMBER_OPTIONS and name not in FLAG_OPTIONS and name not in TEXT_OPTIONS:
            raise DirectiveError(f"unknown simulator option {name!r}")
        options[name] = value
    return options


def _build_plan(options: dict[str, str]) -> Plan:
    numbers = {name: _number(name, options[name]) for name in NUMBER_OPTIONS if name in options}
    fault = options.get("fault") or None
    if fault and not (fault.isdigit() or fault in STREAM_FAULTS or fault in OTHER_FAULTS):
        raise DirectiveError(f"unknown simulator fault {fault!r}")
    long_tokens = numbers.get("tokens", DEFAULT_LONG_TOKENS) if "long" in options else None
    categories = tuple(filter(None, (options.get("categories") or "S1").split(",")))
    guard_fault = options.get("guard_fault") or None
    if guard_fault and not (guard_fault.isdigit() and 400 <= int(guard_fault) <= 599):
        raise DirectiveError(f"guard_fault must be an HTTP status 400..599, got {guard_fault!r}")
    return Plan(
        fault=fault,
        after=numbers.get("after", 0),
        times=numbers.get("times"),
        retry_after=numbers.get("retry_after"),
        retry_after_ms=numbers.get("retry_after_ms"),
        long_tokens=long_tokens,
        tps=numbers.get("tps"),
        ttft=numbers.get("ttft"),
        flag_categories=categories if "flag" in options else (),
        answer_categories=categories if "flag_answer" in options else (),
        answer_flagged_at=int(numbers.get("at", 0)),
        image_categories=categories if "flag_image" in options else (),
        guard_fault=int(guard_fault) if guard_fault else None,
        guard_delay=numbers.get("guard_delay"),
        echo_auth_after=numbers.get("pad", 0) if "echo_auth" in options else None,
        stamp="stamp" in options,
        call=options.get("call") or None,
        call_args=_call_args(options.get("args") or ""),
        rounds=max(1, int(numbers.get("rounds", 1))),
        title_fault=_status("title_fault", numbers.get("title_fault")),
        anyway="anyway" in options,
        same_ids="same_ids" in options,
        long_ids="long_ids" in options,
        preface="preface" in options,
        bad_json="bad_json" in options,
        off_schema="off_schema" in options,
    )


def _status(name: str, value: float | None) -> int | None:
    if value is not None and not 400 <= value <= 599:
        raise DirectiveError(f"{name} must be an HTTP status 400..599, got {value:g}")
    return None if value is None else int(value)


def _number(name: str, value: str) -> float:
    try:
        number = NUMBER_OPTIONS[name](value)
    except ValueError:
        raise DirectiveError(f"simulator option {name} needs a number, got {value!r}") from None
    if number < 0 or (name == "tps" and number == 0):
        raise DirectiveError(f"simulator option {name} must be positive")
    return number


def _call_args(text: str) -> str:
    """`city:Paris,days:2` -> the JSON object text {"city": "Paris", "days": "2"}."""
    pairs = {}
    for pair in filter(None, text.split(",")):
        name, colon, value = pair.partition(":")
        if not colon or not name:
            raise DirectiveError(f"args must be name:value pairs, got {pair!r}")
        pairs[name] = value
    return json.dumps(pairs)
