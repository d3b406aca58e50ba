"""Full-text search over message text and titles: PostgreSQL GIN indexes or SQLite FTS5
tables with their triggers (chatapp/chat/search_index.py); other databases get nothing."""

from django.db import migrations

from chatapp.chat import search_index


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_tool_calls"),
    ]

    operations = [
        migrations.RunPython(
            search_index.for_vendor(search_index.POSTGRESQL_UP, search_index.sqlite_up),
            search_index.for_vendor(search_index.POSTGRESQL_DOWN, search_index.sqlite_down),
        ),
    ]
