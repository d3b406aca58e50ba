"""PostgreSQL: message text is matched and ranked through a stored tsvector column rather
than an index on an expression the database re-parsed for every row it ranked."""

from django.db import migrations

from chatapp.chat import search_index


def to_search_vector(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS message_content_search")
        for statement in search_index.POSTGRESQL_UP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0009_full_text_search"),
    ]

    operations = [
        migrations.RunPython(to_search_vector, migrations.RunPython.noop),
    ]
