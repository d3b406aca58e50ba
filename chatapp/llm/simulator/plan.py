"""Directives: what a test asks the simulator to do with one request.

A directive is `[sim:NAME OPTION=VALUE ...]` inside the last user message, or the same text
(several separated by `;`) in an `X-Sim-Fault` header. See the package docstring for the list.
"""

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
}
FLAG_OPTIONS = ("long", "pace", "flag")
TEXT_OPTIONS = ("fault", "categories")
DEFAULT_LONG_TOKENS = 2000


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
    flag_categories: tuple[str, ...] = ()

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
    categories = options.get("categories") or ("S1" if "flag" in options else "")
    return Plan(
        fault=fault,
        after=numbers.get("after", 0),
        times=numbers.get("times"),
        retry_after=numbers.get("retry_after"),
        retry_after_ms=numbers.get("retry_after_ms"),
        long_tokens=long_tokens,
        tps=numbers.get("tps"),
        ttft=numbers.get("ttft"),
        flag_categories=tuple(filter(None, categories.split(","))),
    )


def _number(name: str, value: str) -> float:
    try:
        number = NUMBER_OPTIONS[name](value)
    except ValueError:
        raise DirectiveError(f"simulator option {name} needs a number, got {value!r}") from None
    if number < 0 or (name == "tps" and number == 0):
        raise DirectiveError(f"simulator option {name} must be positive")
    return number
