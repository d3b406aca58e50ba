"""Ranked full-text search over a user's conversations: titles and message text.

The query takes web-search syntax, read here once for both databases: words (all must
match), "quoted phrases", -word or -"phrase" to exclude, and OR between alternatives (as in
PostgreSQL's websearch_to_tsquery, `a b OR c` is `(a AND b) OR c`). A query made only of
exclusions finds nothing. Each word or phrase is read as the index reads text
(search_index.searched: folded, each CJK character a word, emoji as words of their own).
PostgreSQL ranks with ts_rank over GIN-indexed tsvectors, SQLite with FTS5's bm25
(chatapp/chat/search_index.py); a title match counts double. Only user and assistant text is
searched, never a withheld (safety-blocked) answer. Only the user's newest RANKED_MATCHES
matching messages are ranked (docs/search.md). The snippets are cut here, alike for both.
"""

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db import connection

from chatapp.chat.models import Conversation, MessageRole, MessageStatus
from chatapp.chat.search_index import (
    AS_SEARCHED,
    CJK_CLASS,
    DROPPED,
    EMOJI_CLASS,
    INDEXED_CHARS,
    emoji_word,
    searched_parts,
    searched_text,
)

TITLE_WEIGHT = 2
SNIPPET_WORDS = 24  # about 160 characters of text around the match
SNIPPET_CHARACTERS = 200  # a message this short is its own snippet
# Only the user's newest matching messages are ranked: the time of a search stays bounded
# however common its words are (docs/search.md, "How many matches are ranked").
RANKED_MATCHES = 2_000

# A phrase in quotes (the closing quote may be missing), or a run of anything else; either
# may start with "-" to exclude it.
CHUNK = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')
WORD_CHARACTER = re.compile(r"[^\W_]")  # what both databases' tokenizers keep


@dataclass(frozen=True)
class Alternative:
    """Conversations match when one message holds every `words` item and no `excluded` one.
    Each item is a word or a phrase as typed; the database splits it into its own tokens."""

    words: tuple[str, ...]
    excluded: tuple[str, ...] = ()


def parse(query: str) -> list[Alternative]:
    """The alternatives of a web-search query; empty when it has nothing to look for."""
    alternatives: list[Alternative] = []
    words: list[str] = []
    excluded: list[str] = []
    for match in CHUNK.finditer(query):
        negated = bool(match.group(1) or match.group(3))
        text = match.group(2) if match.group(2) is not None else match.group(4)
        if match.group(4) is not None and not negated and text.lower() == "or":
            if words:
                alternatives.append(Alternative(tuple(words), tuple(excluded)))
            words, excluded = [], []
            continue
        if not searchable(text):
            continue  # punctuation or marks alone: nothing either database would index
        (excluded if negated else words).append(text)
    if words:
        alternatives.append(Alternative(tuple(words), tuple(excluded)))
    return alternatives


def searchable(text: str) -> tuple[str, list[str]] | None:
    """A query's word or phrase as the index reads it: its words as a phrase (blank when it has
    none) and the words of its emoji, which must be in the message too, anywhere; None when it
    holds nothing either database would index."""
    words, emoji = searched_parts(text)
    words = " ".join(words.split()) if WORD_CHARACTER.search(words) else ""
    return (words, emoji) if words or emoji else None


def _terms(text: str) -> list[str]:
    words, emoji = searchable(text) or ("", [])
    return ([words] if words else []) + emoji


def fts5_match(alternatives: list[Alternative]) -> str:
    """An FTS5 MATCH expression: every item is a quoted string of the text as it was indexed
    (search_index.searched), so no user input is syntax."""

    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    def item(text: str) -> str:
        return "(" + " AND ".join(quoted(term) for term in _terms(text)) + ")"

    def alternative(a: Alternative) -> str:
        expression = "(" + " AND ".join(item(w) for w in a.words) + ")"
        return "(" + expression + "".join(f" NOT {item(w)}" for w in a.excluded) + ")"

    return " OR ".join(alternative(a) for a in alternatives)


def tsquery_sql(alternatives: list[Alternative]) -> tuple[str, list[str]]:
    """A PostgreSQL tsquery expression and its parameters: each word or phrase parsed as a
    quoted phrase by websearch_to_tsquery, read as the indexed text was (so it is tokenised
    exactly as that text), and each of its emoji as the word the index holds for it."""
    term = "websearch_to_tsquery('simple', %s)"
    parts: list[str] = []
    params: list[str] = []

    def item(text: str) -> str:
        terms = _terms(text)
        params.extend('"' + t + '"' for t in terms)
        return "(" + " && ".join([term] * len(terms)) + ")"

    for a in alternatives:
        items = [item(w) for w in a.words] + [f"!!{item(w)}" for w in a.excluded]
        parts.append("(" + " && ".join(items) + ")")
    return "(" + " || ".join(parts) + ")", params


def search_conversations(
    user: Any, query: str, offset: int, limit: int, *, team: int | None = None
) -> list[dict]:
    """The user's conversations (in `team`, if given) matching `query`, best first (newest
    first among equals): rows of id, title, created_at, updated_at, message_id (the best
    matching message, or None when only the title matches) and snippet (that message's text
    around the match)."""
    alternatives = parse(unicodedata.normalize("NFC", query))
    if not alternatives:
        return []
    candidates = Conversation.objects.for_user(user).saved()
    if team is not None:
        candidates = candidates.filter(team_id=team)
    mine, mine_params = candidates.order_by().values("id").query.sql_with_params()
    searched = (
        f"m.status <> '{MessageStatus.BLOCKED.value}'"
        f" AND m.role IN ('{MessageRole.USER.value}', '{MessageRole.ASSISTANT.value}')"
    )
    if connection.vendor == "postgresql":
        return _postgresql(alternatives, mine, list(mine_params), searched, offset, limit)
    return _sqlite(alternatives, mine, list(mine_params), searched, offset, limit)


COLUMNS = ("id", "title", "pinned", "created_at", "updated_at", "message_id")

# The id of the user's newest message, read from the end of each conversation's stretch of
# the (conversation, id) index: the walk through the matches, newest first, starts there
# rather than among newer messages of other users.
_NEWEST_ID = """
    SELECT MAX((SELECT MAX(id) FROM chat_message WHERE conversation_id = mine.id)) FROM mine
"""


def _postgresql(alternatives, mine, mine_params, searched, offset, limit) -> list[dict]:
    tsquery, params = tsquery_sql(alternatives)
    title_vector = f"to_tsvector('simple', {searched_text('c.title')})"
    sql = f"""
        WITH mine AS ({mine}),
        newest AS (
            SELECT m.conversation_id, m.id AS message_id, m.search_vector
            FROM chat_message m
            -- the user's conversations as a filter, not a join (IS TRUE keeps the planner from
            -- making one), so that a walk through the ids newest first stops at the bound
            WHERE m.search_vector @@ {tsquery} AND {searched}
                AND (m.conversation_id IN (SELECT id FROM mine)) IS TRUE
                AND m.id <= ({_NEWEST_ID})
            ORDER BY m.id DESC
            LIMIT %s
        ),
        hits AS (
            -- ranked here, after the bound: ts_rank reads only the rows kept
            SELECT DISTINCT ON (conversation_id) conversation_id, message_id,
                ts_rank(search_vector, {tsquery}, 1) AS rank
            FROM newest
            ORDER BY conversation_id, rank DESC, message_id DESC
        ),
        titled AS (
            SELECT c.id AS conversation_id,
                ts_rank({title_vector}, {tsquery}, 1) AS rank
            FROM chat_conversation c JOIN mine ON mine.id = c.id
            WHERE {title_vector} @@ {tsquery}
        ),
        ranked AS (
            SELECT c.id, c.title, c.pinned, c.created_at, c.updated_at, hits.message_id,
                COALESCE(hits.rank, 0) + {TITLE_WEIGHT} * COALESCE(titled.rank, 0) AS score
            FROM (SELECT conversation_id FROM hits UNION SELECT conversation_id FROM titled) f
            JOIN chat_conversation c ON c.id = f.conversation_id
            LEFT JOIN hits ON hits.conversation_id = c.id
            LEFT JOIN titled ON titled.conversation_id = c.id
            ORDER BY score DESC, c.updated_at DESC, c.id DESC
            LIMIT %s OFFSET %s
        )
        SELECT ranked.id, ranked.title, ranked.pinned, ranked.created_at, ranked.updated_at,
            ranked.message_id, m.content
        FROM ranked LEFT JOIN chat_message m ON m.id = ranked.message_id
        ORDER BY ranked.score DESC, ranked.updated_at DESC, ranked.id DESC
    """
    all_params = [*mine_params, *params, RANKED_MATCHES, *params * 3, limit, offset]
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        rows = cursor.fetchall()
    return [_with_snippet(fields, alternatives) for fields in rows]


def _with_snippet(fields: tuple, alternatives: list[Alternative]) -> dict:
    *columns, content = fields
    row = dict(zip(COLUMNS, columns, strict=True))
    row["snippet"] = snippet(content, alternatives) if row["message_id"] else None
    return row


def _sqlite(alternatives, mine, mine_params, searched, offset, limit) -> list[dict]:
    match = fts5_match(alternatives)
    sql = f"""
        WITH mine AS ({mine}),
        newest AS (
            -- FTS5 walks the matches newest first (its rowids are message ids) from the
            -- user's newest message; bm25 is computed for the rows kept, at most the bound
            SELECT m.conversation_id, m.id AS message_id, bm25(message_fts) AS rank
            FROM message_fts JOIN chat_message m ON m.id = message_fts.rowid
            WHERE message_fts MATCH %s
                AND message_fts.rowid <= ({_NEWEST_ID})
                AND {searched} AND m.conversation_id IN (SELECT id FROM mine)
            ORDER BY message_fts.rowid DESC
            LIMIT %s
        ),
        best AS (
            -- SQLite takes the bare column from the row holding the minimum
            SELECT conversation_id, message_id, MIN(rank) AS rank FROM newest GROUP BY 1
        ),
        titled AS (
            SELECT rowid AS conversation_id, bm25(conversation_fts) AS rank
            FROM conversation_fts
            WHERE conversation_fts MATCH %s AND rowid IN (SELECT id FROM mine)
        ),
        page AS (
            SELECT c.id, c.title, c.pinned, c.created_at, c.updated_at, best.message_id,
                COALESCE(best.rank, 0) + {TITLE_WEIGHT} * COALESCE(titled.rank, 0) AS score
            FROM (SELECT conversation_id FROM best UNION SELECT conversation_id FROM titled) f
            JOIN chat_conversation c ON c.id = f.conversation_id
            LEFT JOIN best ON best.conversation_id = c.id
            LEFT JOIN titled ON titled.conversation_id = c.id
            ORDER BY score, c.updated_at DESC, c.id DESC
            LIMIT %s OFFSET %s
        )
        SELECT page.id, page.title, page.pinned, page.created_at, page.updated_at,
            page.message_id, m.content
        FROM page LEFT JOIN chat_message m ON m.id = page.message_id
        ORDER BY page.score, page.updated_at DESC, page.id DESC
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*mine_params, match, RANKED_MATCHES, match, limit, offset])
        rows = [_with_snippet(fields, alternatives) for fields in cursor.fetchall()]
    for row in rows:
        for name in ("created_at", "updated_at"):  # SQLite keeps UTC without its zone
            row[name] = row[name].replace(tzinfo=UTC)
    return rows


# --- snippets: the message's text around the match, read the way the index reads it ----------

# A word as the databases' parsers read one: letters and digits with their marks (any mark: a
# Devanagari vowel sign, an accent typed apart); each CJK character and each emoji alone.
_MARKS = "".join(
    chr(c) for c in range(0x300, 0x1FAFF) if unicodedata.category(chr(c)).startswith("M")
)
_TOKEN = re.compile(
    f"{CJK_CLASS}|{EMOJI_CLASS}|(?:(?!{CJK_CLASS})(?:[^\\W_]|[{re.escape(_MARKS + DROPPED)}]))+"
)
_EMOJI = re.compile(EMOJI_CLASS)
# The composed text read as search reads it, one character for one: marks search leaves out
# stay, inside their word (they are left out of its term).
_ONE_FOR_ONE = AS_SEARCHED | {ord(c): c for c in DROPPED}
_LEFT_OUT = str.maketrans("", "", DROPPED)
SNIPPET_LEAD = SNIPPET_WORDS // 3  # words kept before the first match
SNIPPET_CANDIDATES = 50  # the first matches, each the start of a window weighed


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """(term, start, end) of each word of the composed `text`, as the index reads it."""
    tokens = []
    for match in _TOKEN.finditer(text.translate(_ONE_FOR_ONE)):
        word = match.group()
        term = emoji_word(word) if _EMOJI.fullmatch(word) else word.translate(_LEFT_OUT)
        if term:
            tokens.append((term.lower(), match.start(), match.end()))
    return tokens


def snippet(text: str, alternatives: list[Alternative]) -> str:
    """The text on one line: whole when short, otherwise the SNIPPET_WORDS words around its
    best match (the most searched words and phrases, then the first), with … where cut."""
    text = unicodedata.normalize("NFC", text)
    if len(text) <= SNIPPET_CHARACTERS:
        return " ".join(text.split())
    tokens = _tokens(text[:INDEXED_CHARS])
    if not tokens:
        return " ".join(text[:SNIPPET_CHARACTERS].split()) + "…"
    terms = [t for t, _, _ in tokens]
    sought = {
        tuple(t for t, _, _ in _tokens(term))
        for a in alternatives
        for w in a.words
        for term in _terms(w)
    }
    matches = [
        (at, at + len(phrase), phrase)
        for phrase in sought
        if phrase
        for at in range(len(terms) - len(phrase) + 1)
        if tuple(terms[at : at + len(phrase)]) == phrase
    ]
    matches.sort()
    starts = [at for at, _, _ in matches]
    best, best_score = 0, 0
    for at in starts[:SNIPPET_CANDIDATES]:
        start = max(0, at - SNIPPET_LEAD)
        end = start + SNIPPET_WORDS
        inside = matches[bisect_left(starts, start) : bisect_left(starts, end)]
        score = len({phrase for _, b, phrase in inside if b <= end})
        if score > best_score:
            best, best_score = start, score
    window = tokens[best : best + SNIPPET_WORDS]
    cut_start, cut_end = window[0][1], window[-1][2]
    # with the punctuation that clings to its first and last words: `(see`, `road.`, `❤️`
    while cut_start and not text[cut_start - 1].isspace() and not text[cut_start - 1].isalnum():
        cut_start -= 1
    while cut_end < len(text) and not text[cut_end].isspace() and not text[cut_end].isalnum():
        cut_end += 1
    before = "…" if text[:cut_start].strip() else ""
    after = "…" if text[cut_end:].strip() else ""
    return before + " ".join(text[cut_start:cut_end].split()) + after
