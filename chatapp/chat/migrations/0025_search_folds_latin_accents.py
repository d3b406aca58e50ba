"""Both databases search Latin letters without their accents (`cafe` finds `café`, `viet` finds
`Việt`): PostgreSQL reads the text through search_index.FOLD_FROM, SQLite's FTS5 tables use
unicode61's `remove_diacritics 2`, which also folds a letter with two accents. PostgreSQL also
reads full-width ASCII (`ｍａｘ`) as ASCII; SQLite searches each word in both widths instead."""

from django.db import migrations

from chatapp.chat import search_index


def rebuild_sqlite_tables(cursor) -> None:
    # A tokenizer is an FTS5 table's own: the tables are made again and re-read.
    search_index.sqlite_down(cursor)
    search_index.sqlite_up(cursor)


# A generated column's expression cannot be altered: the column is made again (a table rewrite).
fold_latin_accents = search_index.for_vendor(
    [*search_index.POSTGRESQL_DOWN, *search_index.POSTGRESQL_UP], rebuild_sqlite_tables
)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0024_search_splits_at_punctuation"),
    ]

    operations = [
        migrations.RunPython(fold_latin_accents, migrations.RunPython.noop),
    ]
