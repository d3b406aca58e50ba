"""Both databases read text for search through search_index.searched(): each Chinese, Japanese
or Korean character a word (a query's run of them a phrase: `東京` finds `東京都`), Arabic and
Hebrew vowel marks left out (`كتب` finds `كَتَبَ`), each emoji also a word. PostgreSQL's
search_vector and title index are made again; SQLite's FTS5 tables are made again with
triggers that index the text through chat_search_text() and a tokenizer that keeps marks in
their word, and re-read."""

from django.db import migrations

from chatapp.chat import search_index


def rebuild_sqlite_tables(cursor) -> None:
    # A tokenizer is an FTS5 table's own: the tables are made again and re-read.
    search_index.sqlite_down(cursor)
    search_index.sqlite_up(cursor)


# A generated column's expression cannot be altered: the column is made again (a table rewrite).
read_any_script = search_index.for_vendor(
    [*search_index.POSTGRESQL_DOWN, *search_index.POSTGRESQL_UP], rebuild_sqlite_tables
)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0025_search_folds_latin_accents"),
    ]

    operations = [
        migrations.RunPython(read_any_script, migrations.RunPython.noop),
    ]
