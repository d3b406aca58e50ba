"""chatapp.chat.json_stream: the same values json.loads reads, read a piece at a time."""

import io
import json

import pytest

from chatapp.chat import json_stream

DOCUMENTS = [
    {"a": 1, "items": [], "z": 2},
    {"a": [1, 2], "b": {"c": "d"}, "items": [{"x": 1.5e10}, 12345678901234567890, "é\\u00e9"]},
    {"a": "x", "items": [1, 22, 333], "after": [True, None], "last": -0.25},
    {"items": [1]},
    {"a": 1},
    {},
    [1, 2, 3],
    "text",
    1234567,
]


@pytest.mark.parametrize("chunk", [1, 3, 64 * 1024])
@pytest.mark.parametrize("document", DOCUMENTS)
def test_reads_what_json_loads_reads(monkeypatch, chunk, document):
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    for indent in (None, 1):
        text = json.dumps(document, indent=indent, ensure_ascii=False)
        read = json_stream.read_object(io.StringIO(text), lazy="items", after=("a",))
        if isinstance(read, dict) and not isinstance(read.get("items", []), list):
            read["items"] = list(read["items"])
        assert read == document


def test_the_list_is_read_as_it_is_iterated(monkeypatch):
    monkeypatch.setattr(json_stream, "CHUNK", 16)
    text = json.dumps({"a": 1, "items": ["x" * 100 for _ in range(100)], "b": 2})
    file = io.StringIO(text)
    read = json_stream.read_object(file, lazy="items", after=("a",))
    assert next(read["items"]) == "x" * 100
    assert file.tell() < len(text) / 10
    assert len(list(read["items"])) == 99
    assert read["b"] == 2


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "items": [1, 2',
        '{"a": 1, "items": [1] "b": 2}',
        '{"a": 1, "items": []} x',
        '{"a": 1, "items": [], 5: 1}',  # a name after the list that is no string
        '{"a": 1, "items": [], [1]: 2}',
    ],
)
def test_damage_anywhere_is_an_error(text):
    read = json_stream.read_object(io.StringIO(text), lazy="items", after=("a",))
    with pytest.raises(json.JSONDecodeError):
        list(read["items"])


@pytest.mark.parametrize("text", ["", "{", '{"a" 1}', '{"a": 1,}', "[1] 2", "{1: 2}"])
def test_a_damaged_start_is_an_error(text):
    with pytest.raises(json.JSONDecodeError):
        json_stream.read_object(io.StringIO(text), lazy="items", after=("a",))


@pytest.mark.parametrize("chunk", [1, 7, 64 * 1024])
def test_an_error_says_where_it_is_in_the_whole_file(monkeypatch, chunk):
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    text = '{"a": 1,\n "items": [\n  1,\n  2,\n  3 4\n ]\n}'
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    read = json_stream.read_object(io.StringIO(text), lazy="items", after=("a",))
    with pytest.raises(json.JSONDecodeError) as error:
        list(read["items"])
    assert (error.value.lineno, error.value.colno, error.value.pos) == (5, 5, expected.value.pos)
    assert str(error.value) == f"Expecting ',': line 5 column 5 (char {expected.value.pos})"


@pytest.mark.parametrize("chunk", range(1, 40))
def test_a_number_cut_by_a_chunk_after_its_point_or_exponent_is_read_whole(monkeypatch, chunk):
    """A "1." or "2.5e" at the end of what was read starts a number, it is not one."""
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    document = {"a": 1.5, "items": [10.5, 2e-10, -3.75], "z": 123.456}
    for indent in (None, 1):
        text = json.dumps(document, indent=indent)
        read = json_stream.read_object(io.StringIO(text), lazy="items", after=("a",))
        read["items"] = list(read["items"])
        assert read == document


def test_damage_is_refused_where_it_is_without_reading_the_rest(monkeypatch):
    """A file damaged in its second item is refused there: not after the whole rest of the
    file was read into memory looking for an end that would make the item whole."""
    monkeypatch.setattr(json_stream, "CHUNK", 16)
    items = ",".join(json.dumps({"text": "x" * 100}) for _ in range(200))
    text = '{"a": 1, "items": [{"text": "y"}, {"text": "y" 1}, ' + items + "]}"
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    file = io.StringIO(text)
    read = json_stream.read_object(file, lazy="items", after=("a",))
    with pytest.raises(json.JSONDecodeError) as error:
        list(read["items"])
    assert error.value.pos == expected.value.pos
    assert file.tell() < len(text) / 10
