from chatapp.core.words import counted


def test_one_is_singular_and_every_other_count_plural():
    assert [counted(n, "answer") for n in (0, 1, 2, 10)] == [
        "0 answers",
        "1 answer",
        "2 answers",
        "10 answers",
    ]
