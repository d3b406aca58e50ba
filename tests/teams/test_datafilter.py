"""The data filter's detectors, placeholders and the team's own patterns."""

import pytest

from chatapp.teams.datafilter import DataRules, apply, compile_pattern, pattern_problem

CARD = "4111 1111 1111 1111"  # passes Luhn
NOT_A_CARD = "4111 1111 1111 1112"
IBAN = "GB82 WEST 1234 5698 7654 32"  # passes mod-97
NOT_AN_IBAN = "GB82 WEST 1234 5698 7654 33"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"


def question(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def redact(text: str, **actions) -> tuple[str, list]:
    filtered = apply(question(text), DataRules(actions))
    return filtered.messages[0]["content"], [(r.placeholder, r.label) for r in filtered.redactions]


@pytest.mark.parametrize(
    ("detector", "text", "expected"),
    [
        ("email", "mail ann@example.com now", "mail [EMAIL_1] now"),
        ("card", f"card {CARD} ok", "card [CARD_1] ok"),
        ("card", f"card {NOT_A_CARD} ok", f"card {NOT_A_CARD} ok"),
        ("iban", f"pay {IBAN}.", "pay [IBAN_1]."),
        ("iban", f"pay {NOT_AN_IBAN}.", f"pay {NOT_AN_IBAN}."),
        ("phone", "call +44 20 7946 0958 today", "call [PHONE_1] today"),
        ("phone", "in 2024 we had 12 people", "in 2024 we had 12 people"),
        ("api_key", f"key={AWS_KEY}", "key=[API_KEY_1]"),
        ("api_key", "sk-proj-abcdefghijklmnopqrstuvwx1234", "[API_KEY_1]"),
        ("private_key", f"here:\n{PEM}\nthanks", "here:\n[PRIVATE_KEY_1]\nthanks"),
    ],
)
def test_each_detector(detector, text, expected):
    assert redact(text, **{detector: "redact"})[0] == expected


@pytest.mark.parametrize(
    ("detector", "text", "expected"),
    [
        ("email", "x@@ann@example.com", "x@@[EMAIL_1]"),
        ("email", "to: jo.b+c@mail.example.co.uk.", "to: [EMAIL_1]."),
        ("email", "josé@example.com", "[EMAIL_1]"),
        ("email", "a@b and @c.d", "a@b and @c.d"),
        ("private_key", f"-----BEGIN PRIVATE KEY-----\nA\n{PEM} tail", "[PRIVATE_KEY_1] tail"),
    ],
)
def test_detector_edges(detector, text, expected):
    assert redact(text, **{detector: "redact"})[0] == expected


@pytest.mark.parametrize(
    ("detector", "text"),
    [("email", "a" * 1_000_000), ("private_key", "-----BEGIN PRIVATE KEY-----" * 40_000)],
)
def test_built_in_detectors_match_in_linear_time(detector, text):
    """A 1 MB document of one long word, or of key headers with no END line: with the
    searches `re` made from every position, about half an hour and three minutes, holding the
    thread every database call of the server waits for."""
    assert redact(text, **{detector: "redact"}) == (text, [])


def test_one_value_keeps_one_placeholder_and_others_are_numbered():
    text, found = redact("a@x.io, b@x.io and a@x.io again", email="redact")

    assert text == "[EMAIL_1], [EMAIL_2] and [EMAIL_1] again"
    assert found == [("[EMAIL_1]", "e-mail address"), ("[EMAIL_2]", "e-mail address")]


def test_detectors_left_off_find_nothing():
    assert redact("ann@example.com", card="redact") == ("ann@example.com", [])


def test_block_reports_the_newest_question_and_redacts_older_ones():
    messages = [
        {"role": "user", "content": "old ann@example.com"},
        {"role": "assistant", "content": "noted ann@example.com"},
        {"role": "user", "content": "new bob@example.com"},
    ]
    filtered = apply(messages, DataRules({"email": "block"}))

    assert filtered.blocked == ["e-mail address"]
    assert filtered.messages[0]["content"] == "old [EMAIL_1]"
    assert filtered.messages[1]["content"] == "noted ann@example.com"  # answers are not filtered


def test_own_patterns_and_content_parts():
    rules = DataRules({}, (("PROJECT", compile_pattern(r"PRJ-\d{4}"), "redact"),))
    messages = [{"role": "user", "content": [{"type": "text", "text": "see PRJ-1234"}]}]
    filtered = apply(messages, rules)

    assert filtered.messages[0]["content"] == [{"type": "text", "text": "see [PROJECT_1]"}]
    assert [(r.placeholder, r.label) for r in filtered.redactions] == [("[PROJECT_1]", "project")]


@pytest.mark.parametrize(
    ("pattern", "bad"),
    [("PRJ-\\d+", False), ("(?i)secret", False), ("(", True), ("a*", True), ("(a)\\1", True)],
)
def test_pattern_problems(pattern, bad):
    assert (pattern_problem(pattern) is not None) == bad


@pytest.mark.parametrize(
    ("pattern", "bad"),
    [
        ("x\\C", True),
        ("(?i)\\C{4}", True),
        ("[\\C]", True),
        ("\\\\C", False),  # a backslash, then C
        ("\\pC", False),  # the Unicode category C
        ("\\Qa\\C\\E", False),  # quoted: the text a\C
        ("\\Qa\\E\\C", True),
    ],
)
def test_single_byte_matches_are_refused(pattern, bad):
    """`\\C` matches one byte of the UTF-8 text, part of a letter: `\\C` alone replaced "é" by
    two placeholders, and `\\C\\C\\C\\C` dropped the end of a question with emoji."""
    problem = pattern_problem(pattern)
    assert (problem is not None and "single byte" in problem) == bad


def test_lookaround_is_refused_with_the_reason():
    problem = pattern_problem("(?<!\\d)\\d{6}")
    assert problem is not None and "lookaround and backreferences are not supported" in problem


def test_a_pattern_that_backtracks_in_re_matches_in_linear_time():
    """With Python's `re`, `(a+)+$` on this text takes some 2**40 steps: hours."""
    rules = DataRules({}, (("RUN", compile_pattern("(a+)+$"), "redact"),))
    text = "a" * 40 + "!"
    filtered = apply([{"role": "user", "content": text}], rules)
    assert filtered.messages[0]["content"] == text
    done = apply([{"role": "user", "content": "x aaaa"}], rules)
    assert done.messages[0]["content"] == "x [RUN_1]"
