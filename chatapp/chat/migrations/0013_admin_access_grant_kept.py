"""A break-glass grant outlives its conversation and the admin's account, so its owner still
sees it: the grant names the owner and keeps the admin's name, and its conversation or admin
becomes null when that is deleted."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def name_owners_and_admins(apps, schema_editor):
    grants = apps.get_model("chat", "AdminAccessGrant")
    for grant in grants.objects.select_related("conversation", "admin"):
        grant.owner_id = grant.conversation.owner_id
        grant.admin_name = grant.admin.username
        grant.save(update_fields=["owner", "admin_name"])


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
        migrations.AddField(
            model_name="adminaccessgrant",
            name="admin_name",
            field=models.CharField(default="", max_length=150),
            preserve_default=False,
        ),
        migrations.RunPython(name_owners_and_admins, migrations.RunPython.noop),
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
        migrations.AlterField(
            model_name="adminaccessgrant",
            name="admin",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
