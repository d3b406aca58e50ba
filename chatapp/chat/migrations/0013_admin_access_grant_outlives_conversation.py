"""A break-glass grant outlives its conversation, so its owner still sees it: the grant names
the owner itself, and its conversation becomes null when the conversation is deleted."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def name_the_owners(apps, schema_editor):
    grants = apps.get_model("chat", "AdminAccessGrant")
    for grant in grants.objects.select_related("conversation"):
        grant.owner_id = grant.conversation.owner_id
        grant.save(update_fields=["owner"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0012_index_answers_when_done"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="adminaccessgrant",
            name="owner",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(name_the_owners, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="adminaccessgrant",
            name="owner",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="adminaccessgrant",
            name="conversation",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="admin_access_grants",
                to="chat.conversation",
            ),
        ),
    ]
