"""PostgreSQL searches a message's first search_index.INDEXED_CHARS characters: a tsvector
holds at most 1 MB, and a longer message could not be stored (chatapp/chat/search_index.py)."""

from django.db import migrations

from chatapp.chat import search_index

# A generated column's expression cannot be altered: the column is made again (a table rewrite).
index_message_start = search_index.for_vendor(
    [*search_index.POSTGRESQL_MESSAGE_DOWN, *search_index.POSTGRESQL_UP], lambda cursor: None
)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0016_share_refusals"),
    ]

    operations = [
        migrations.RunPython(index_message_start, migrations.RunPython.noop),
    ]
