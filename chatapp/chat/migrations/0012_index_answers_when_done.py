"""An answer enters the search index when it stops streaming, not at every checkpoint
(chatapp/chat/search_index.py): PostgreSQL generates no search vector for a streaming row,
SQLite's triggers leave it out of the FTS5 table."""

from django.db import migrations

from chatapp.chat import search_index


def reindex_messages(cursor):
    search_index.create_sqlite_triggers(cursor, "message_fts")
    search_index.reindex_sqlite(cursor, "message_fts")


# A generated column's expression cannot be altered: the column is made again (a table rewrite).
index_answers_when_done = search_index.for_vendor(
    [*search_index.POSTGRESQL_MESSAGE_DOWN, *search_index.POSTGRESQL_UP], reindex_messages
)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0011_response_format"),
    ]

    operations = [
        migrations.RunPython(index_answers_when_done, migrations.RunPython.noop),
    ]
