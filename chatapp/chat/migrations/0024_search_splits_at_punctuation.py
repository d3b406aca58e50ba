"""PostgreSQL reads message text and titles for search composed (NFC), with their punctuation as
spaces, so it finds and splits words as SQLite's FTS5 does (chatapp/chat/search_index.py)."""

from django.db import migrations

from chatapp.chat import search_index

# A generated column's expression cannot be altered: the column is made again (a table rewrite).
split_at_punctuation = search_index.for_vendor(
    [*search_index.POSTGRESQL_DOWN, *search_index.POSTGRESQL_UP], lambda cursor: None
)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0023_message_tool_turns_completion_tokens"),
    ]

    operations = [
        migrations.RunPython(split_at_punctuation, migrations.RunPython.noop),
    ]
