import django.db.models.deletion
from django.db import migrations, models


def link_in_order(apps, schema_editor):
    """Every existing conversation is one straight branch: each message follows the one
    before it (one UPDATE for all of them)."""
    Message = apps.get_model("chat", "Message")
    previous = (
        Message.objects.filter(conversation_id=models.OuterRef("conversation_id"))
        .filter(id__lt=models.OuterRef("id"))
        .order_by("-id")
        .values("id")[:1]
    )
    Message.objects.update(parent_id=models.Subquery(previous))


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0004_message_redactions"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="active_leaf",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="chat.message",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        migrations.RunPython(link_in_order, migrations.RunPython.noop),
    ]
