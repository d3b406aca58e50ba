"""Ranked full-text search over a user's conversations: titles and message text.

The query takes web-search syntax, read here once for both databases: words (all must
match), "quoted phrases", -word or -"phrase" to exclude, and OR between alternatives (as in
PostgreSQL's websearch_to_tsquery, `a b OR c` is `(a AND b) OR c`). A query made only of
exclusions finds nothing. PostgreSQL ranks with ts_rank over GIN-indexed tsvectors, SQLite
with FTS5's bm25 (chatapp/chat/search_index.py); a title match counts double. Only user and
assistant text is searched, never a withheld (safety-blocked) answer. Only the user's
newest RANKED_MATCHES matching messages are ranked (docs/search.md).
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db import connection

from chatapp.chat.models import Conversation, MessageRole, MessageStatus
from chatapp.chat.search_index import AS_SEARCHED, NARROW, WIDE, searched_text

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
AS_NARROW = str.maketrans(NARROW)


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
        if not WORD_CHARACTER.search(text):
            continue  # punctuation alone: nothing either database would index
        (excluded if negated else words).append(text)
    if words:
        alternatives.append(Alternative(tuple(words), tuple(excluded)))
    return alternatives


def fts5_match(alternatives: list[Alternative]) -> str:
    """An FTS5 MATCH expression: every item is a quoted string, so no user input is syntax,
    in ASCII or in full-width letters (the index holds the text as written)."""

    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    def either_width(text: str) -> str:
        narrow = text.translate(AS_NARROW)
        wide = narrow.translate(WIDE)
        return quoted(narrow) if wide == narrow else f"({quoted(narrow)} OR {quoted(wide)})"

    def alternative(a: Alternative) -> str:
        expression = "(" + " AND ".join(either_width(w) for w in a.words) + ")"
        return "(" + expression + "".join(f" NOT {either_width(w)}" for w in a.excluded) + ")"

    return " OR ".join(alternative(a) for a in alternatives)


def tsquery_sql(alternatives: list[Alternative]) -> tuple[str, list[str]]:
    """A PostgreSQL tsquery expression and its parameters: each item parsed as a quoted
    phrase by websearch_to_tsquery, its punctuation made spaces as in the indexed text (so
    it is tokenised exactly as that text)."""
    item = "websearch_to_tsquery('simple', %s)"
    parts, params = [], []
    for a in alternatives:
        terms = [item] * len(a.words) + [f"!!{item}"] * len(a.excluded)
        parts.append("(" + " && ".join(terms) + ")")
        params += ['"' + text.translate(AS_SEARCHED) + '"' for text in (*a.words, *a.excluded)]
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
            ranked.message_id, m.content,
            CASE WHEN length(m.content) <= {SNIPPET_CHARACTERS} THEN m.content
            ELSE ts_headline('simple', {searched_text("m.content")}, {tsquery},
                'MaxFragments=1, MaxWords={SNIPPET_WORDS}, MinWords={SNIPPET_WORDS // 2},'
                ' StartSel="", StopSel=""') END
        FROM ranked LEFT JOIN chat_message m ON m.id = ranked.message_id
        ORDER BY ranked.score DESC, ranked.updated_at DESC, ranked.id DESC
    """
    all_params = [*mine_params, *params, RANKED_MATCHES, *params * 3, limit, offset, *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        rows = cursor.fetchall()
    results = []
    for *fields, content, headline in rows:
        row = dict(zip(COLUMNS, fields, strict=True))
        row["snippet"] = _cut_marks(content, headline) if headline else None
        results.append(row)
    return results


def _cut_marks(text: str, excerpt: str) -> str:
    """The excerpt on one line, with … where it cuts the text. The excerpt is of the text
    as searched, composed and without punctuation: that stretch of the composed text, with its
    punctuation, is shown."""
    text = unicodedata.normalize("NFC", text)
    at = text.translate(AS_SEARCHED).find(excerpt)
    if at >= 0:
        excerpt = text[at : at + len(excerpt)]
    before = "…" if at > 0 and text[:at].strip() else ""
    after = "…" if at >= 0 and text[at + len(excerpt) :].strip() else ""
    return before + " ".join(excerpt.split()) + after


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
        )
        SELECT c.id, c.title, c.pinned, c.created_at, c.updated_at, best.message_id
        FROM (SELECT conversation_id FROM best UNION SELECT conversation_id FROM titled) f
        JOIN chat_conversation c ON c.id = f.conversation_id
        LEFT JOIN best ON best.conversation_id = c.id
        LEFT JOIN titled ON titled.conversation_id = c.id
        ORDER BY COALESCE(best.rank, 0) + {TITLE_WEIGHT} * COALESCE(titled.rank, 0),
            c.updated_at DESC, c.id DESC
        LIMIT %s OFFSET %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*mine_params, match, RANKED_MATCHES, match, limit, offset])
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]
        snippets = _sqlite_snippets(cursor, match, [r["message_id"] for r in rows])
    for row in rows:
        row["snippet"] = snippets.get(row["message_id"])
        for name in ("created_at", "updated_at"):  # SQLite keeps UTC without its zone
            row[name] = row[name].replace(tzinfo=UTC)
    return rows


def _sqlite_snippets(cursor, match: str, message_ids: list[int | None]) -> dict[int, str]:
    """FTS5's snippet() of each message, the match with text either side, or a short
    message's whole text (one query)."""
    ids = [i for i in message_ids if i is not None]
    if not ids:
        return {}
    cursor.execute(
        f"SELECT rowid, CASE WHEN length(content) <= {SNIPPET_CHARACTERS} THEN content"
        f" ELSE snippet(message_fts, 0, '', '', '…', {SNIPPET_WORDS}) END FROM message_fts"
        f" WHERE message_fts MATCH %s AND rowid IN ({', '.join(['%s'] * len(ids))})",
        [match, *ids],
    )
    return {rowid: " ".join(text.split()) for rowid, text in cursor.fetchall()}
