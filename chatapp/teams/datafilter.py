"""Data that never leaves: a team's filter over what is sent upstream.

Built-in detectors (payment card numbers passing the Luhn check, IBANs passing the mod-97
check, e-mail addresses, phone numbers, API-key and private-key shapes) and the team's own
regular expressions, each set to `redact` (replaced upstream by a typed placeholder such as
`[EMAIL_1]`; the stored message keeps the original) or `block` (the question is refused before
anything is written or sent). Only user messages are filtered: answers came from upstream.

A team's own patterns are matched by RE2 (google-re2), in time linear in the text: Python's
`re` backtracks, and a pattern such as `(a+)+$` takes seconds, then minutes, as a question
grows, holding the whole process. RE2 has Python's syntax without lookaround and
backreferences; the built-in detectors, written here, stay on `re` (with lookaround and
Unicode `\\w`) where each is written to match in linear time too, and use RE2 where `re`
cannot (the private key's search for its END line).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import re2

from chatapp.teams.models import DataAction, TeamPolicy

MAX_PATTERNS = 20
MAX_PATTERN_LENGTH = 300
PATTERN_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,19}")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the caller's answer, not a log line


class UnusablePattern(ValueError):
    """A stored pattern RE2 refuses (saved before the filter used RE2); nothing may be sent."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def compile_pattern(pattern: str) -> Any:
    """A team's pattern compiled for linear-time matching; raises re2.error."""
    return re2.compile(pattern, options=_RE2_OPTIONS)


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return 15 <= len(compact) <= 34 and int(number) % 97 == 1


def _phone(text: str) -> bool:
    return 8 <= len(re.sub(r"\D", "", text)) <= 15


@dataclass(frozen=True)
class Detector:
    kind: str  # the placeholder's name: [EMAIL_1]
    label: str  # in words, for the user
    pattern: Any  # a compiled `re` or RE2 pattern
    check: Callable[[str], bool] = lambda _: True


# In this order: a card number is not also reported as a phone number.
DETECTORS: dict[str, Detector] = {
    "private_key": Detector(
        "PRIVATE_KEY",
        "private key",
        # In `re`, each BEGIN line with no END after it searched to the end of the text: a
        # document of such lines took quadratic time.
        compile_pattern(
            r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
            r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
        ),
    ),
    "api_key": Detector(
        "API_KEY",
        "API key",
        re.compile(
            r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
            r"|github_pat_[A-Za-z0-9_]{22,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}"
            r"|LLM\|[A-Za-z0-9|_-]{20,})"
        ),
    ),
    # Starting only where a run of name characters starts, each read once: from every
    # position of a long word without @, the search took quadratic time.
    "email": Detector(
        "EMAIL",
        "e-mail address",
        re.compile(r"(?<![\w.%+-])[\w.%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+"),
    ),
    "card": Detector(
        "CARD", "card number", re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"), _card
    ),
    "iban": Detector("IBAN", "IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), _iban),
    "phone": Detector(
        "PHONE",
        "phone number",
        re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{6,18}\d(?![\w])"),
        _phone,
    ),
}


@dataclass(frozen=True)
class DataRules:
    """The team's filter: an action per built-in detector, and its own patterns."""

    actions: dict[str, str] = field(default_factory=dict)  # detector -> redact | block
    patterns: tuple[tuple[str, Any, str], ...] = ()  # (name, compiled RE2 pattern, action)

    @classmethod
    def of(cls, policy: TeamPolicy) -> "DataRules":
        actions = {
            name: getattr(policy, f"data_{name}")
            for name in DETECTORS
            if getattr(policy, f"data_{name}") != DataAction.OFF
        }
        patterns = []
        for p in policy.data_patterns or []:
            try:
                patterns.append((p["name"], compile_pattern(p["pattern"]), p["action"]))
            except re2.error:
                raise UnusablePattern(p["name"]) from None
        return cls(actions, tuple(patterns))

    @property
    def active(self) -> bool:
        return bool(self.actions or self.patterns)


@dataclass(frozen=True)
class Redaction:
    placeholder: str  # [EMAIL_1]
    label: str  # e-mail address


@dataclass
class Filtered:
    messages: list[dict[str, Any]]
    redactions: list[Redaction]  # in the newest question, for the user to see
    blocked: list[str]  # labels of what a `block` rule found in the newest question


class _Redactor:
    """Replaces findings with numbered placeholders; one value keeps one placeholder."""

    def __init__(self, rules: DataRules):
        self.rules = rules
        self.seen: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}
        self.found: list[Redaction] = []
        self.blocked: list[str] = []
        self.newest = False  # earlier questions are redacted even where a rule says block

    def rules_in_order(self) -> list[tuple[str, str, Any, Callable[[str], bool], str]]:
        built_in = [
            (d.kind, d.label, d.pattern, d.check, self.rules.actions[name])
            for name, d in DETECTORS.items()
            if name in self.rules.actions
        ]
        own = [
            (name, name.lower(), regex, _always, action)
            for name, regex, action in self.rules.patterns
        ]
        return built_in + own

    def text(self, text: str) -> str:
        self.found, self.blocked = [], []
        for kind, label, pattern, check, action in self.rules_in_order():
            replace = partial(self._replace, kind=kind, label=label, check=check, action=action)
            text = pattern.sub(replace, text)
        return text

    def _replace(self, match: Any, kind: str, label: str, check, action: str) -> str:
        value = match.group(0)
        if not value or not check(value):
            return value
        if action == DataAction.BLOCK and self.newest:
            if label not in self.blocked:
                self.blocked.append(label)
            return value
        key = (kind, value)
        if key not in self.seen:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.seen[key] = f"[{kind}_{self.counts[kind]}]"
        placeholder = self.seen[key]
        if all(r.placeholder != placeholder for r in self.found):
            self.found.append(Redaction(placeholder, label))
        return placeholder


def _always(_: str) -> bool:
    return True


def apply(messages: list[dict[str, Any]], rules: DataRules, own_system: bool = False) -> Filtered:
    """The messages as they may go upstream, and what the newest question had redacted.

    `own_system`: the system message is the member's own text (not one of the team's
    prompts): it is filtered as the newest question is, sent with it as it is."""
    if not rules.active:
        return Filtered(messages, [], [])
    redactor = _Redactor(rules)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    filtered, redactions, blocked = [], [], []
    system_blocked: list[str] = []
    for i, message in enumerate(messages):
        if message["role"] == "system" and own_system and isinstance(message["content"], str):
            redactor.newest = True
            filtered.append({**message, "content": redactor.text(message["content"])})
            system_blocked += redactor.blocked
            continue
        if message["role"] != "user":
            filtered.append(message)
            continue
        redactor.newest = i == last_user
        filtered.append({**message, "content": _content(message["content"], redactor)})
        if i == last_user:
            redactions, blocked = list(redactor.found), list(redactor.blocked)
    return Filtered(filtered, redactions, list(dict.fromkeys(system_blocked + blocked)))


def _content(content: Any, redactor: _Redactor) -> Any:
    if isinstance(content, str):
        return redactor.text(content)
    parts, found, blocked = [], [], []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            part = {**part, "text": redactor.text(part.get("text") or "")}
            found += redactor.found
            blocked += redactor.blocked
        parts.append(part)
    redactor.found = list(dict.fromkeys(found))
    redactor.blocked = list(dict.fromkeys(blocked))
    return parts


def _matches_single_bytes(pattern: str) -> bool:
    """Whether the pattern uses RE2's `\\C` (any one byte) outside a `\\Q...\\E` quote."""
    i, quoted = 0, False
    while i < len(pattern):
        if quoted:
            quoted = not pattern.startswith("\\E", i)
            i += 1 if quoted else 2
        elif pattern[i] == "\\":
            if pattern[i + 1 : i + 2] == "C":
                return True
            quoted = pattern[i + 1 : i + 2] == "Q"
            i += 2
        else:
            i += 1
    return False


def pattern_problem(pattern: str) -> str | None:
    """Why a team's regular expression cannot be used, or None."""
    if not pattern or len(pattern) > MAX_PATTERN_LENGTH:
        return f"a pattern is 1 to {MAX_PATTERN_LENGTH} characters"
    # Text is matched as UTF-8: one byte may be part of a letter, so what a match covers (and
    # what its placeholder replaces) would not follow the pattern.
    if _matches_single_bytes(pattern):
        return "\\C (any single byte) is not supported: use . for any character"
    try:
        compiled = compile_pattern(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "refused"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        if reason.startswith(("invalid perl operator", "invalid escape sequence")):
            reason += "; lookaround and backreferences are not supported"
        return f"not a valid regular expression ({reason})"
    if compiled.search(""):
        return "it matches empty text: it would match everywhere"
    return None
