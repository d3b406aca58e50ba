"""The pauses between password reset mails move to core's AddressMail, which the other mails
to an address (an invitation's confirmation link) share; the pauses running are kept."""

from django.db import migrations


def move_pauses(apps, schema_editor):
    PasswordResetMail = apps.get_model("accounts", "PasswordResetMail")
    AddressMail = apps.get_model("core", "AddressMail")
    AddressMail.objects.bulk_create(
        AddressMail(kind="password_reset", address_digest=row.address_digest, sent_at=row.sent_at)
        for row in PasswordResetMail.objects.all()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_user_email_unique"),
        ("core", "0001_address_mail"),
    ]

    operations = [
        migrations.RunPython(move_pauses, migrations.RunPython.noop),
        migrations.DeleteModel(name="PasswordResetMail"),
    ]
