"""GET /api/conversations/?q=: ranked full-text search, on SQLite (FTS5) and PostgreSQL
(DATABASE_URL=postgres://...: tsvector and a GIN index)."""

import re
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from chatapp.chat import search as search_module
from chatapp.chat import search_index
from chatapp.chat.actions.replies import (
    Checkpoint,
    checkpoint_replies,
    mark_interrupted,
    stale_replies,
)
from chatapp.chat.models import Message, MessageStatus
from chatapp.chat.search import Alternative, fts5_match, parse
from chatapp.chat.search_index import repair_sqlite_index

URL = "/api/conversations/"


def search(client, q: str, page: int = 1) -> dict:
    response = client.get(URL, {"q": q, "page": page})
    assert response.status_code == 200, response.content
    return response.json()


def titles(client, q: str) -> list[str]:
    return [r["title"] for r in search(client, q)["results"]]


def test_denser_matches_rank_first_whatever_their_age(member_client, member, make_conversation):
    make_conversation(member, "Dense", messages=[("user", "alpaca wool: alpaca fleece, alpaca")])
    make_conversation(member, "Unrelated", messages=[("user", "llamas carry loads")])
    filler = " ".join(f"word{n}" for n in range(80))
    make_conversation(member, "Passing", messages=[("assistant", f"{filler} one alpaca {filler}")])
    assert titles(member_client, "alpaca") == ["Dense", "Passing"]


def test_a_title_match_counts_beside_the_text(member_client, member, make_conversation):
    make_conversation(member, "Alpaca care", messages=[("user", "how often to shear?")])
    make_conversation(member, "Alpaca diet", messages=[("user", "do alpacas eat hay? alpaca")])
    make_conversation(member, "Farm notes", messages=[("user", "the alpaca needs hay")])
    results = search(member_client, "alpaca")["results"]
    assert [r["title"] for r in results] == ["Alpaca diet", "Alpaca care", "Farm notes"]
    assert results[1]["message_id"] is None and results[1]["snippet"] is None
    assert results[0]["pinned"] is False
    assert "alpaca needs hay" in results[2]["snippet"]


def test_equal_matches_are_newest_first(member_client, member, make_conversation):
    for name in ("First", "Second", "Third"):
        make_conversation(member, name, messages=[("user", "the same question about yaks")])
    assert titles(member_client, "yaks") == ["Third", "Second", "First"]


def test_every_word_must_match_in_one_message(member_client, member, make_conversation):
    make_conversation(member, "Both", messages=[("user", "Shearing season for alpacas")])
    make_conversation(member, "Split", messages=[("user", "shearing"), ("assistant", "alpacas")])
    assert titles(member_client, "alpacas shearing") == ["Both"]


def test_quoted_phrases_match_words_in_order(member_client, member, make_conversation):
    make_conversation(member, "In order", messages=[("user", "we need a red wool blanket")])
    make_conversation(member, "Apart", messages=[("user", "wool, and a red blanket")])
    assert titles(member_client, '"red wool"') == ["In order"]
    assert titles(member_client, '"red wool') == ["In order"]  # an unclosed quote
    assert sorted(titles(member_client, "red wool")) == ["Apart", "In order"]


def test_a_minus_excludes_a_word_or_a_phrase(member_client, member, make_conversation):
    make_conversation(member, "Sweater", messages=[("user", "knit a wool sweater")])
    make_conversation(member, "Blanket", messages=[("user", "weave a wool blanket")])
    assert titles(member_client, "wool -sweater") == ["Blanket"]
    assert titles(member_client, 'wool -"wool blanket"') == ["Sweater"]
    assert titles(member_client, "-sweater") == []  # nothing left to look for


def test_or_joins_alternatives(member_client, member, make_conversation):
    make_conversation(member, "Llamas", messages=[("user", "llama trekking in Peru")])
    make_conversation(member, "Alpacas", messages=[("user", "alpaca farms in Chile")])
    make_conversation(member, "Camels", messages=[("user", "camel rides in Egypt")])
    assert sorted(titles(member_client, "llama OR alpaca")) == ["Alpacas", "Llamas"]
    assert sorted(titles(member_client, "llama peru or camel")) == ["Camels", "Llamas"]
    assert titles(member_client, "llama OR") == ["Llamas"]  # a dangling OR is a word no more


def test_words_match_whole_words_in_any_case_and_script(member_client, member, make_conversation):
    make_conversation(member, "Café", messages=[("user", "Ein Kaffee im CAFÉ? 東京 🦙 naïve")])
    assert titles(member_client, "café") == ["Café"]
    assert titles(member_client, "kaffee") == ["Café"]
    assert titles(member_client, "naïve") == ["Café"]
    assert titles(member_client, "Kaff") == []  # whole words, not parts of them


def test_composed_and_decomposed_accents_find_each_other(member_client, member, make_conversation):
    """An accented letter may be typed as one character or as a letter and a combining mark
    (text pasted from macOS is often the second): both are the same word to search."""
    decomposed = "cafe\u0301 au lait, nai\u0308ve"
    filler = " ".join(f"word{n}" for n in range(60))
    make_conversation(member, "Pasted", messages=[("user", decomposed)])
    make_conversation(member, "Typed", messages=[("user", "un café, naïve")])
    make_conversation(member, "Cre\u0300me brûlée", messages=[("user", "dessert")])
    make_conversation(member, "Long", messages=[("assistant", f"{filler} ho\u0308ren {filler}")])
    assert sorted(titles(member_client, "café")) == ["Pasted", "Typed"]
    assert sorted(titles(member_client, "cafe\u0301")) == ["Pasted", "Typed"]
    assert sorted(titles(member_client, "nai\u0308ve")) == ["Pasted", "Typed"]
    assert titles(member_client, "crème") == ["Cre\u0300me brûlée"]
    (result,) = search(member_client, "hören")["results"]
    assert "word59 hören word0" in unicodedata.normalize("NFC", result["snippet"])
    assert result["snippet"].startswith("…") and result["snippet"].endswith("…")


def test_accents_on_latin_letters_are_folded_alike_on_either_database(
    member_client, member, make_conversation
):
    """`cafe` finds `café` and `viet` finds `Việt` (two marks on one letter), composed or
    not, on both databases; letters of other alphabets stay apart (`и` is not `й`)."""
    filler = " ".join(f"word{n}" for n in range(60))
    make_conversation(member, "Composed", messages=[("user", "Tiếng Việt, un café")])
    decomposed = "Tie\u0302\u0301ng Vie\u0323\u0302t"
    make_conversation(member, "Decomposed", messages=[("user", decomposed)])
    make_conversation(member, "Plain", messages=[("user", "tieng viet, un cafe")])
    make_conversation(member, "Crème brûlée", messages=[("user", "dessert")])
    make_conversation(member, "Russian", messages=[("user", "мой дом")])
    make_conversation(member, "Long", messages=[("assistant", f"{filler} Phở Hà Nội {filler}")])
    for q in ("viet", "Việt", "Vie\u0323\u0302t", "VIỆT", "tieng viet"):
        assert sorted(titles(member_client, q)) == ["Composed", "Decomposed", "Plain"], q
    assert sorted(titles(member_client, "cafe")) == ["Composed", "Plain"]
    assert sorted(titles(member_client, "café")) == ["Composed", "Plain"]
    assert titles(member_client, "creme brulee") == ["Crème brûlée"]
    assert titles(member_client, "мои") == []
    (result,) = search(member_client, "pho ha noi")["results"]
    assert "word59 Phở Hà Nội word0" in result["snippet"]


def test_full_width_letters_and_digits_are_their_ascii_letters(
    member_client, member, make_conversation
):
    """Text typed with an East Asian keyboard often holds full-width Latin letters and digits
    (`ｍａｘ`): they are the same words as `max` on either database, both ways."""
    make_conversation(member, "Wide", messages=[("user", "ｍａｘ＿ｔｏｋｅｎｓ は ２０４８")])
    make_conversation(member, "Narrow", messages=[("user", "set max_tokens to 2048")])
    make_conversation(member, "ＡＩ ｎｏｔｅｓ", messages=[("user", "nothing")])
    for q in ("ｍａｘ", "max", "ＭＡＸ", "max_tokens", "ｍａｘ＿ｔｏｋｅｎｓ", "２０４８", "2048"):
        assert sorted(titles(member_client, q)) == ["Narrow", "Wide"], q
    assert titles(member_client, "ai notes") == ["ＡＩ ｎｏｔｅｓ"]


def test_chinese_and_japanese_words_are_found_inside_text_on_either_database(
    member_client, member, make_conversation
):
    """Chinese and Japanese put no spaces between words: each CJK character is a word to
    search, and a query's run of them a phrase, so a word is found inside a sentence, as a
    substring would be (Korean's syllables too: its particles cling to the word before)."""
    make_conversation(member, "Tokyo", messages=[("user", "明日は東京都に行きます。")])
    make_conversation(member, "Kyoto", messages=[("assistant", "京都のお寺を見ました")])
    make_conversation(member, "Beijing", messages=[("user", "我在北京大学学习中文")])
    make_conversation(member, "Seoul", messages=[("user", "서울에서 만나요")])
    make_conversation(member, "Katakana", messages=[("user", "新しいコンピューターを買った")])
    make_conversation(member, "東京旅行の計画", messages=[("user", "nothing")])
    assert sorted(titles(member_client, "東京")) == ["Tokyo", "東京旅行の計画"]
    assert sorted(titles(member_client, "京都")) == ["Kyoto", "Tokyo"]  # 東京都 holds 京都
    assert titles(member_client, "北京") == ["Beijing"]
    assert titles(member_client, "中文") == ["Beijing"]
    assert titles(member_client, "行き") == ["Tokyo"]
    assert titles(member_client, "コンピュータ") == ["Katakana"]
    assert titles(member_client, "서울") == ["Seoul"]
    assert titles(member_client, "旅行") == ["東京旅行の計画"]
    assert titles(member_client, '"都に行"') == ["Tokyo"]
    assert titles(member_client, "京都 -東京") == ["Kyoto"]
    assert sorted(titles(member_client, "大学 OR お寺")) == ["Beijing", "Kyoto"]
    assert titles(member_client, "東都") == []  # the characters together, in that order
    assert sorted(titles(member_client, "京 都")) == ["Kyoto", "Tokyo"]  # each anywhere


def test_a_cjk_snippet_is_the_text_around_the_match(member_client, member, make_conversation):
    filler = "。".join(["今日は天気がいいです"] * 12)
    text = f"{filler}。私は東京都の大学で日本語を勉強しています。{filler}"
    chat = make_conversation(member, "Long", messages=[("assistant", text)])
    (result,) = search(member_client, "日本語")["results"]
    assert result["message_id"] == chat.messages.get().pk
    assert "東京都の大学で日本語を勉強" in result["snippet"]
    assert result["snippet"].startswith("…") and result["snippet"].endswith("…")


def test_arabic_and_hebrew_vowel_marks_are_folded_alike_on_either_database(
    member_client, member, make_conversation
):
    """Most Arabic and Hebrew text leaves its vowels out, but a quotation, a lesson or a
    dictionary writes them: a word is found either way, both ways; the tatweel that
    stretches a word does not count either."""
    make_conversation(member, "Vowelled", messages=[("user", "كَتَبَ الوَلَدُ الدَّرْسَ")])
    make_conversation(member, "Plain", messages=[("assistant", "كتب الطالب الدرس")])
    make_conversation(member, "Stretched", messages=[("user", "كتـــب")])
    make_conversation(member, "Pointed", messages=[("user", "שָׁלוֹם עֲלֵיכֶם")])
    make_conversation(member, "Unpointed", messages=[("user", "שלום לכולם")])
    make_conversation(member, "Presentation form", messages=[("user", "\ufb2c\u05dc\u05d5\u05dd")])
    for q in ("كتب", "كَتَبَ", "كَتب", "كتـب"):
        assert sorted(titles(member_client, q)) == ["Plain", "Stretched", "Vowelled"], q
    assert sorted(titles(member_client, "الدرس")) == ["Plain", "Vowelled"]
    assert sorted(titles(member_client, "الدَّرْسَ")) == ["Plain", "Vowelled"]
    assert titles(member_client, "الولد") == ["Vowelled"]
    for q in ("שלום", "שָׁלוֹם"):  # and the letter with its points as one character (U+FB2C)
        assert sorted(titles(member_client, q)) == ["Pointed", "Presentation form", "Unpointed"]
    assert titles(member_client, "שלם") == []  # a letter is a letter: only the marks fold
    assert titles(member_client, "עליכם") == ["Pointed"]
    assert sorted(titles(member_client, "שלום -לכולם")) == ["Pointed", "Presentation form"]
    filler = " ".join(f"word{n}" for n in range(60))
    make_conversation(member, "Long", messages=[("user", f"{filler} مَرْحَبًا بِكُمْ {filler}")])
    (result,) = search(member_client, "مرحبا")["results"]
    assert "word59 مَرْحَبًا بِكُمْ word0" in result["snippet"]  # shown as written


def test_emoji_are_found_on_either_database(member_client, member, make_conversation):
    """Emoji are no letters to either database's parser: each is also indexed as a word of its
    own, so a query with one finds the messages and titles holding it (anywhere in them)."""
    make_conversation(member, "Llama", messages=[("user", "🦙 llamas are great")])
    make_conversation(member, "Thumbs", messages=[("assistant", "great work👍🏽")])
    make_conversation(member, "Heart", messages=[("user", "I ❤️ it")])
    make_conversation(member, "Trip ✈️", messages=[("user", "to Lima")])
    make_conversation(member, "Plain", messages=[("user", "no pictures, great")])
    assert titles(member_client, "🦙") == ["Llama"]
    assert titles(member_client, "👍") == ["Thumbs"]  # in any skin tone
    assert titles(member_client, "👍🏽") == ["Thumbs"]
    assert titles(member_client, "👍🏿") == []
    assert titles(member_client, "❤") == ["Heart"]
    assert titles(member_client, "❤️") == ["Heart"]
    assert titles(member_client, "✈") == ["Trip ✈️"]
    assert titles(member_client, "llamas 🦙") == ["Llama"]
    assert titles(member_client, '"great 🦙"') == ["Llama"]
    assert titles(member_client, "work") == ["Thumbs"]  # an emoji splits words
    assert sorted(titles(member_client, "great -🦙")) == ["Plain", "Thumbs"]
    assert sorted(titles(member_client, "🦙 OR ❤")) == ["Heart", "Llama"]
    assert titles(member_client, "emojif09fa699") == ["Llama"]  # how the index spells 🦙


def test_python_and_sql_read_text_for_search_alike(db):
    """PostgreSQL reads text in SQL (searched_text), SQLite's triggers through Python
    (searched): both must read every folded character, CJK range and emoji alike."""
    samples = [
        "Ein Kaffee im CAFÉ? Tiếng Việt, cafe\u0301, ｍａｘ＿ｔｏｋｅｎｓ ２０４８, a'b\\c %d",
        "كَتَبَ الوَلَدُ كتـــاب שָׁלוֹם \ufb2c",
        "明日は東京都に行きます。서울에서 ｶﾀｶﾅ 𠀋 ㄅ 々",
        "🦙 llama👍🏽ok ❤️ ⭐ 👨\u200d👩\u200d👧 🇯🇵 ⌚",
        "".join(search_index.DROPPED) + "x" + search_index.FOLD_FROM,
        "".join(chr(a) + chr(b) for a, b in search_index.CJK_RANGES),
        "".join(chr(a) + chr(b) for a, b in search_index.EMOJI_RANGES),
        "",
    ]
    with connection.cursor() as cursor:
        for text in samples:
            if connection.vendor == "postgresql":
                reading = search_index.searched_text("t.text")
                cursor.execute(f"SELECT {reading} FROM (SELECT %s::text AS text) t", [text])
            else:
                cursor.execute(f"SELECT {search_index.SQLITE_FUNCTION}(%s)", [text])
            assert cursor.fetchone()[0] == search_index.searched(text), text


def test_the_browser_marks_what_search_folds_with_the_same_lists():
    """static/js/chat/snippet.js marks the searched words in the sidebar: its lists of CJK
    ranges, emoji, dropped marks and Latin accents are search_index's."""
    source = (Path(__file__).parents[2] / "static/js/chat/snippet.js").read_text()

    def ranges(name: str) -> list[tuple[int, int]]:
        block = re.search(rf"const {name} = \[(.*?)\n\];", source, re.S)
        assert block, name
        return [(int(a, 16), int(b, 16)) for a, b in re.findall(r"\[(0x\w+), (0x\w+)\]", block[1])]

    assert ranges("CJK_RANGES") == list(search_index.CJK_RANGES)
    assert ranges("EMOJI_RANGES") == list(search_index.EMOJI_RANGES)
    assert ranges("DROPPED_RANGES") == list(search_index.DROPPED_RANGES)
    accents = re.search(r"const LATIN_ACCENTS = \[(.*?)\];", source, re.S)
    assert sorted(int(c, 16) for c in re.findall(r"0x\w+", accents[1])) == sorted(
        map(ord, search_index.DIACRITICS)
    )


def test_hyphenated_words_and_addresses_are_found_as_typed(
    member_client, member, make_conversation
):
    make_conversation(
        member, "Setup", messages=[("assistant", "the built-in simulator, ask ops@example.com")]
    )
    assert titles(member_client, "built-in simulator") == ["Setup"]
    assert titles(member_client, "ops@example.com") == ["Setup"]


def test_words_inside_addresses_numbers_and_markup_are_found_on_either_database(
    member_client, member, make_conversation
):
    """Both databases split text at every punctuation mark, as FTS5 does: PostgreSQL's own
    parser would keep an address, a file path, a decimal or a tag as one token, or drop it."""
    make_conversation(member, "Links", messages=[("user", "see https://github.com/org/repo.git")])
    make_conversation(member, "Mail", messages=[("user", "write to ops@example.com today")])
    make_conversation(member, "Path", messages=[("user", "it is in /usr/local/bin now")])
    make_conversation(member, "Pi", messages=[("user", "pi is 3.14 roughly")])
    make_conversation(member, "Markup", messages=[("assistant", "wrap it in <div>alert(1)</div>")])
    make_conversation(member, "<section> tags", messages=[("user", "nothing here")])
    assert titles(member_client, "github") == ["Links"]
    assert titles(member_client, "repo") == ["Links"]
    assert titles(member_client, "example") == ["Mail"]
    assert titles(member_client, "example.com") == ["Mail"]
    assert titles(member_client, "ops@example.com") == ["Mail"]
    assert titles(member_client, "usr") == ["Path"]
    assert titles(member_client, "/usr/local") == ["Path"]
    assert titles(member_client, "14") == ["Pi"]
    assert titles(member_client, "3.14") == ["Pi"]
    assert titles(member_client, "div") == ["Markup"]
    assert titles(member_client, "alert") == ["Markup"]
    assert titles(member_client, "section") == ["<section> tags"]


def test_a_snippet_keeps_the_punctuation_of_the_text(member_client, member, make_conversation):
    filler = " ".join(f"word{n}" for n in range(60))
    text = f"{filler} clone https://github.com/org/repo.git, then run make. {filler}"
    make_conversation(member, "Links", messages=[("assistant", text)])
    (result,) = search(member_client, "github")["results"]
    assert "https://github.com/org/repo.git" in result["snippet"]
    assert result["snippet"].startswith("…") and result["snippet"].endswith("…")


ODD_QUERIES = [
    '"',
    '""',
    "'",
    "*",
    "wool*",
    "^wool",
    "NEAR(wool blanket)",
    "NEAR",
    "wool NEAR/2 blanket",
    "(wool",
    "wool)",
    "()",
    "AND",
    "NOT wool",
    "OR",
    "or or or",
    "- -- ---",
    "content:wool",
    "{content}: wool",
    "wool + blanket",
    "a & b | !c <-> d",
    ":*",
    "\\",
    "%",
    "_",
    "';DROP TABLE chat_message;--",
    "\u200b",
    "🦙",
    "東京",
    "ü" * 300,
    ("wool " * 200).strip(),
    "x" * 1000,
    '"wool" -"blanket" OR "" -',
]


@pytest.mark.parametrize("q", ODD_QUERIES)
def test_odd_queries_never_fail(member_client, member, make_conversation, q):
    make_conversation(member, "Blanket", messages=[("user", "a wool blanket")])
    data = search(member_client, q)
    assert isinstance(data["results"], list)


def test_operators_inside_a_query_are_searched_as_words(member_client, member, make_conversation):
    make_conversation(member, "Near", messages=[("user", "sit near the fire")])
    make_conversation(member, "Wool", messages=[("user", "a wool blanket")])
    assert titles(member_client, "NEAR") == ["Near"]
    assert titles(member_client, "wool*") == ["Wool"]
    assert titles(member_client, "(wool)") == ["Wool"]


def test_a_query_over_the_length_limit_is_400(member_client):
    assert member_client.get(URL, {"q": "x" * 1000}).status_code == 200
    response = member_client.get(URL, {"q": "x" * 1001})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "q"


def test_other_peoples_text_and_titles_are_never_found(
    member_client, member, outsider, make_conversation
):
    make_conversation(outsider, "Secret yak plans", messages=[("user", "the yak treasure map")])
    make_conversation(member, "Mine", messages=[("user", "something else")])
    for q in ("yak", "treasure", '"treasure map"', "yak OR unrelated", "plans"):
        assert search(member_client, q)["results"] == [], q


def test_temporary_chats_are_never_found(member_client, member, make_conversation):
    make_conversation(member, "Fleeting", messages=[("user", "quokka")], temporary=True)
    make_conversation(member, "Quokka", temporary=True)
    assert search(member_client, "quokka")["results"] == []


def test_withheld_answers_are_never_searched_or_shown(member_client, member, make_conversation):
    chat = make_conversation(member, "Screened", messages=[("user", "tell me something")])
    Message.objects.create(
        conversation=chat,
        role="assistant",
        content="the forbidden recipe, and something",
        status=MessageStatus.BLOCKED,
    )
    assert search(member_client, "forbidden")["results"] == []
    found = search(member_client, "something")["results"]
    assert [r["message_id"] for r in found] == [chat.messages.get(role="user").pk]
    assert "forbidden" not in found[0]["snippet"]


def test_only_questions_and_answers_are_searched(member_client, member, make_conversation):
    make_conversation(
        member,
        "Tools",
        messages=[("system", "you are a secretive assistant"), ("user", "what is the weather")],
    )
    assert search(member_client, "secretive")["results"] == []
    assert titles(member_client, "weather") == ["Tools"]


def test_the_snippet_holds_the_match_and_the_message_id_names_it(
    member_client, member, make_conversation
):
    long_text = " ".join(f"filler{n}" for n in range(200))
    chat = make_conversation(
        member,
        "Long",
        messages=[
            ("user", "a question"),
            ("assistant", f"{long_text} then card the vicuña fibre gently {long_text}"),
        ],
    )
    [found] = search(member_client, "vicuña")["results"]
    assert found["message_id"] == chat.messages.get(role="assistant").pk
    assert "card the vicuña fibre" in found["snippet"]
    assert found["snippet"].startswith("…") and found["snippet"].endswith("…")
    assert len(found["snippet"]) < 300
    assert "\n" not in found["snippet"]


def test_a_short_message_is_its_own_snippet(member_client, member, make_conversation):
    make_conversation(member, "Short", messages=[("user", "Shear\nthe  alpaca")])
    [found] = search(member_client, "alpaca")["results"]
    assert found["snippet"] == "Shear the alpaca"
    # Under the length, whatever its number of words (more than a long message's snippet has).
    many_words = " ".join(f"w{n}" for n in range(40)) + " then the vicuña, at last."
    assert len(many_words) <= search_module.SNIPPET_CHARACTERS
    make_conversation(member, "Many words", messages=[("user", many_words)])
    [found] = search(member_client, "vicuña")["results"]
    assert found["snippet"] == many_words


def test_edited_and_deleted_text_is_found_as_it_now_is(member_client, member, make_conversation):
    chat = make_conversation(member, "Draft", messages=[("user", "first draft about llamas")])
    message = chat.messages.get()
    message.content = "second draft about guanacos"
    message.save(update_fields=["content"])
    assert titles(member_client, "llamas") == []
    assert titles(member_client, "guanacos") == ["Draft"]
    chat.title = "Renamed"
    chat.save()
    assert titles(member_client, "renamed") == ["Renamed"]
    assert titles(member_client, "draft") == ["Renamed"]
    chat.delete()
    assert titles(member_client, "guanacos") == []


def test_results_paginate_in_rank_order(member_client, member, make_conversation):
    for n in range(45):
        make_conversation(member, f"Chat {n}", messages=[("user", f"about yaks {n}")])
    first = search(member_client, "yaks")
    assert len(first["results"]) == 20
    assert first["next"].endswith("q=yaks&page=2")
    third = search(member_client, "yaks", page=3)
    assert len(third["results"]) == 5 and third["next"] is None
    seen = [r["title"] for p in (1, 2, 3) for r in search(member_client, "yaks", p)["results"]]
    assert sorted(seen) == sorted(f"Chat {n}" for n in range(45))


def test_found_conversations_carry_their_times_in_utc_as_the_list_does(
    member_client, member, make_conversation
):
    make_conversation(member, "Yak facts", messages=[("user", "how heavy is a yak?")])
    listed = member_client.get(URL).json()["results"][0]
    found = search(member_client, "yak")["results"][0]
    assert found["created_at"] == listed["created_at"]
    assert found["updated_at"] == listed["updated_at"]
    assert found["created_at"].endswith("Z")  # UTC, not a local time left to the reader


def test_search_takes_the_same_queries_however_many_results(
    member_client, member, make_conversation, django_assert_max_num_queries
):
    make_conversation(member, "One", messages=[("user", "yak")])
    with django_assert_max_num_queries(4) as few:  # session, user, search, snippets
        search(member_client, "yak")
    for n in range(30):
        make_conversation(member, f"Yak {n}", messages=[("user", "yak"), ("assistant", "a yak")])
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(search(member_client, "yak")["results"]) == 20


def test_only_the_users_newest_matches_are_ranked(
    member_client, member, outsider, make_conversation, monkeypatch
):
    monkeypatch.setattr(search_module, "RANKED_MATCHES", 3)
    filler = " ".join(f"word{n}" for n in range(40))
    old = make_conversation(member, "Oldest", messages=[("user", "yak yak yak, all about yaks")])
    make_conversation(member, "Yak herding", messages=[("user", "yak yak yak yak")])
    newer = [
        make_conversation(member, f"Newer {n}", messages=[("user", f"{filler} a yak {filler}")])
        for n in range(3)
    ]
    # Newer still, and not counted against the bound: others' text, withheld text, temporary chats.
    make_conversation(outsider, "Theirs", messages=[("user", "yak")] * 3)
    Message.objects.create(conversation=old, role="assistant", content="yak", status="blocked")
    make_conversation(member, "Fleeting", messages=[("user", "yak")] * 3, temporary=True)

    results = search(member_client, "yak")["results"]
    # The three newest matches are ranked (the denser ones are older); a title still matches.
    assert [r["title"] for r in results] == ["Yak herding", "Newer 2", "Newer 1", "Newer 0"]
    assert results[0]["message_id"] is None and results[0]["snippet"] is None
    assert [r["message_id"] for r in results[1:]] == [
        chat.messages.get().pk for chat in reversed(newer)
    ]
    assert all("a yak" in r["snippet"] for r in results[1:])

    monkeypatch.setattr(search_module, "RANKED_MATCHES", 5)
    assert titles(member_client, "yak") == [
        "Yak herding",
        "Oldest",
        "Newer 2",
        "Newer 1",
        "Newer 0",
    ]


# --- the query language, read once for both databases ----------------------------------------


def test_parse_reads_words_phrases_exclusions_and_alternatives():
    assert parse('wool "red blanket" -moth OR -"x y" llama') == [
        Alternative(("wool", "red blanket"), ("moth",)),
        Alternative(("llama",), ("x y",)),
    ]
    assert parse("-only -exclusions") == []
    assert parse("  ") == []
    assert parse("* ( ) -") == []


def test_fts5_match_quotes_every_item_as_the_index_reads_it():
    assert fts5_match(parse('"hi" NEAR(x) 東京 a"b')) == (
        '((("hi") AND ("NEAR x") AND ("東 京") AND ("a") AND ("b")))'
    )
    assert fts5_match(parse("ａ -b OR 東")) == '((("a")) NOT ("b")) OR ((("東")))'
    assert fts5_match(parse('"ok 🦙" -👍🏽')) == (
        '((("ok" AND "emojif09fa699")) NOT ("emojif09f918d" AND "emojif09f8fbd"))'
    )


# --- answers enter the index when they stop streaming --------------------------------------


def streaming_answer(member, make_conversation, text: str) -> Message:
    conversation = make_conversation(member, "Streaming", messages=[("user", "tell me")])
    return Message.objects.create(
        conversation=conversation, role="assistant", content=text, status=MessageStatus.STREAMING
    )


def test_an_answer_is_found_once_it_has_finished(member_client, member, make_conversation):
    answer = streaming_answer(member, make_conversation, "the vicuna")
    assert titles(member_client, "vicuna") == []
    checkpoint_replies([Checkpoint(answer.pk, "the vicuna and the guanaco", seq=2)])
    assert titles(member_client, "guanaco") == []  # a checkpoint leaves the index alone
    Message.objects.filter(pk=answer.pk).update(
        content="the vicuna and the guanaco graze", status=MessageStatus.COMPLETE
    )
    (result,) = search(member_client, "guanaco")["results"]
    assert result["message_id"] == answer.pk
    assert result["snippet"] == "the vicuna and the guanaco graze"
    answer.conversation.delete()  # out of the index again, which stays whole
    assert titles(member_client, "guanaco") == []
    make_conversation(member, "Later", messages=[("user", "guanaco")])
    assert titles(member_client, "guanaco") == ["Later"]


def test_an_answer_its_process_left_is_found_with_the_text_it_kept(
    member_client, member, make_conversation
):
    answer = streaming_answer(member, make_conversation, "a llama")
    checkpoint_replies([Checkpoint(answer.pk, "a llama, then an alpaca", seq=2)])
    found = stale_replies(timezone.now() + timedelta(seconds=1), alive=[])
    assert len(mark_interrupted(found)) == 1
    assert [r["message_id"] for r in search(member_client, "alpaca")["results"]] == [answer.pk]


def test_a_streaming_answer_deleted_leaves_the_index_whole(
    member_client, member, make_conversation
):
    streaming_answer(member, make_conversation, "an unfinished vicuna").conversation.delete()
    make_conversation(member, "Kept", messages=[("assistant", "a finished vicuna")])
    assert titles(member_client, "vicuna") == ["Kept"]


# --- upgrading: chat.0026 reads what was indexed before it ------------------------------------


def index_as_before_0026() -> None:
    """The search index as a release before chat.0026 built it: the text as written."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for statement in search_index.POSTGRESQL_DOWN:
                cursor.execute(statement)
            cursor.execute(
                "ALTER TABLE chat_message ADD COLUMN search_vector tsvector GENERATED ALWAYS AS"
                " (to_tsvector('simple'::regconfig, content)) STORED"
            )
            return
        search_index.sqlite_down(cursor)
        for name, fts in search_index.SQLITE_TABLES.items():
            cursor.execute(
                f"CREATE VIRTUAL TABLE {name} USING fts5({fts.column}, content='{fts.table}',"
                " content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
            )
            cursor.execute(
                f"CREATE TRIGGER {name}_insert AFTER INSERT ON {fts.table} BEGIN"
                f" INSERT INTO {name}(rowid, {fts.column}) VALUES (new.id, new.{fts.column}); END"
            )


def test_the_upgrade_reads_again_what_an_earlier_release_indexed(
    transactional_db, member_client, member, make_conversation
):
    executor = MigrationExecutor(connection)
    executor.migrate([("chat", "0025_search_folds_latin_accents")])
    try:
        index_as_before_0026()
        make_conversation(member, "Trip", messages=[("user", "كَتَبَ 🦙 明日は東京都に行く")])
        assert titles(member_client, "東京") == []  # as that release found it
    finally:
        latest = MigrationExecutor(connection)
        latest.migrate(latest.loader.graph.leaf_nodes())
    for q in ("東京", "京都", "كتب", "🦙"):
        assert titles(member_client, q) == ["Trip"], q
    make_conversation(member, "Later", messages=[("user", "京都")])  # the triggers of today
    assert sorted(titles(member_client, "京都")) == ["Later", "Trip"]


# --- the index itself on SQLite ----------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 triggers")
def test_triggers_a_table_rebuild_dropped_are_recreated(member_client, member, make_conversation):
    make_conversation(member, "Before", messages=[("user", "vicuna")])
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER message_fts_insert")  # as a rebuilt table loses them
    make_conversation(member, "During", messages=[("user", "vicuna")])
    assert repair_sqlite_index(connection) is True
    assert repair_sqlite_index(connection) is False  # nothing missing any more
    make_conversation(member, "After", messages=[("user", "vicuna")])
    assert sorted(titles(member_client, "vicuna")) == ["After", "Before", "During"]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 triggers")
def test_reading_the_table_again_leaves_streaming_answers_out(
    member_client, member, make_conversation
):
    answer = streaming_answer(member, make_conversation, "a vicuna so far")
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER message_fts_update")
    assert repair_sqlite_index(connection) is True  # 'rebuild' read the streaming row too
    assert titles(member_client, "vicuna") == []
    Message.objects.filter(pk=answer.pk).update(status=MessageStatus.COMPLETE)
    assert titles(member_client, "vicuna") == ["Streaming"]
    answer.delete()
    assert titles(member_client, "vicuna") == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's GIN index")
@pytest.mark.parametrize("q", ["vicuna", "東京", "كَتَبَ", "🦙", '"red wool" -moth'])
def test_postgresql_answers_from_the_gin_index(member, make_conversation, q):
    make_conversation(member, "Indexed", messages=[("user", "vicuna 東京都 كتب 🦙 red wool")])
    tsquery, params = search_module.tsquery_sql(parse(q))
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            f"EXPLAIN SELECT id FROM chat_message WHERE search_vector @@ {tsquery}", params
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "message_search_vector" in plan


def distinct_words(count: int) -> str:
    """Words that are all different: five letters each, as a..z in base 26."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = []
    for n in range(count):
        word = ""
        for _ in range(5):
            n, digit = divmod(n, 26)
            word += letters[digit]
        words.append(word)
    return " ".join(words)


def test_a_message_longer_than_an_index_can_hold_is_saved_and_found_by_its_start(
    member_client, member, make_conversation
):
    """PostgreSQL's tsvector holds at most 1 MB of words and positions: the index reads a
    message's first characters (search_index.INDEXED_CHARS), so a longer one, such as an API
    client's saved history, is saved all the same."""
    text = "llamacorn " + distinct_words(150_000)  # 900,000 characters: a 1.5 MB tsvector
    make_conversation(member, "Long", messages=[("user", text)])
    assert titles(member_client, "llamacorn") == ["Long"]
