"""An answer enters the search index when it stops streaming, not at every checkpoint
(chatapp/chat/search_index.py): PostgreSQL generates no search vector for a streaming row,
SQLite's triggers leave it out of the FTS5 table."""

from django.db import migrations

from chatapp.chat import search_index


def index_answers_when_done(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        # A generated column's expression cannot be altered: it is made again (a table rewrite).
        schema_editor.execute("DROP INDEX IF EXISTS message_search_vector")
        schema_editor.execute("ALTER TABLE chat_message DROP COLUMN IF EXISTS search_vector")
        for statement in search_index.POSTGRESQL_UP:
            schema_editor.execute(statement)
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            search_index.create_sqlite_triggers(cursor, "message_fts")
            search_index.reindex_sqlite(cursor, "message_fts")


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0011_response_format"),
    ]

    operations = [
        migrations.RunPython(index_answers_when_done, migrations.RunPython.noop),
    ]
