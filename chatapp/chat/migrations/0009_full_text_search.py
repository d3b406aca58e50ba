"""Full-text search over message text and titles: PostgreSQL GIN indexes or SQLite FTS5
tables with their triggers (chatapp/chat/search_index.py); other databases get nothing."""

from django.db import migrations

from chatapp.chat import search_index


def run_for_vendor(statements):
    def run(apps, schema_editor):
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_tool_calls"),
    ]

    operations = [
        migrations.RunPython(
            run_for_vendor(
                {"postgresql": search_index.POSTGRESQL_UP, "sqlite": search_index.sqlite_up()}
            ),
            run_for_vendor(
                {"postgresql": search_index.POSTGRESQL_DOWN, "sqlite": search_index.sqlite_down()}
            ),
        ),
    ]
