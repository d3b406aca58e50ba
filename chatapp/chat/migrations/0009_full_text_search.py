"""Full-text search over message text and titles: PostgreSQL GIN indexes or SQLite FTS5
tables with their triggers (chatapp/chat/search_index.py); other databases get nothing."""

from django.db import migrations

from chatapp.chat import search_index


def for_vendor(postgresql, sqlite):
    """An operation running the PostgreSQL statements, or the SQLite function on a cursor."""

    def run(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor == "postgresql":
            for statement in postgresql:
                schema_editor.execute(statement)
        elif connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                sqlite(cursor)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_tool_calls"),
    ]

    operations = [
        migrations.RunPython(
            for_vendor(search_index.POSTGRESQL_UP, search_index.sqlite_up),
            for_vendor(search_index.POSTGRESQL_DOWN, search_index.sqlite_down),
        ),
    ]
