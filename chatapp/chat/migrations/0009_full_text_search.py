"""Full-text search over message text and titles: PostgreSQL GIN indexes or SQLite FTS5
tables with their triggers (chatapp/chat/search_index.py); other databases get nothing."""

from django.db import migrations

from chatapp.chat import search_index


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        for statement in search_index.POSTGRESQL_UP:
            schema_editor.execute(statement)
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            search_index.sqlite_up(cursor)


def drop(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        for statement in search_index.POSTGRESQL_DOWN:
            schema_editor.execute(statement)
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            search_index.sqlite_down(cursor)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_tool_calls"),
    ]

    operations = [
        migrations.RunPython(create, drop),
    ]
