"""The chat page's warning of a refused key finds the team's refusals of the last day."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0014_answer_reserved_tokens"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("error_code", "auth_failed")),
                fields=["conversation", "updated_at"],
                name="message_key_refused",
            ),
        ),
    ]
