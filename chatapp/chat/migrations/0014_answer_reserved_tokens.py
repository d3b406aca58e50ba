"""What a streaming answer may spend, held against the team's monthly budgets until it ends."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0013_admin_access_grant_kept"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="reserved_tokens",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
