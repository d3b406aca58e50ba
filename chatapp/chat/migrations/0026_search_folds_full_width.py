"""PostgreSQL reads full-width ASCII (`ｍａｘ`) as ASCII for search (chatapp/chat/search_index.py);
SQLite searches each word in both widths instead, and needs nothing."""

from django.db import migrations

from chatapp.chat import search_index

# A generated column's expression cannot be altered: the column is made again (a table rewrite).
fold_full_width = search_index.for_vendor(
    [*search_index.POSTGRESQL_DOWN, *search_index.POSTGRESQL_UP], lambda cursor: None
)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0025_search_folds_latin_accents"),
    ]

    operations = [
        migrations.RunPython(fold_full_width, migrations.RunPython.noop),
    ]
