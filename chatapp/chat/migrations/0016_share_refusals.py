"""Shares taken before they kept each message's refusal code get it from their conversation,
so "Continue in my chats" leaves a question the safety policy refused out of the copy's later
requests (planning reads the code on its answer)."""

from django.db import migrations


def add_refusals(apps, schema_editor):
    Share = apps.get_model("chat", "Share")
    Message = apps.get_model("chat", "Message")
    for share in Share.objects.iterator():
        if all("error_code" in entry for entry in share.messages):
            continue
        codes = {
            (role, created_at.isoformat()): code
            for role, created_at, code in Message.objects.filter(
                conversation_id=share.conversation_id
            ).values_list("role", "created_at", "error_code")
        }
        for entry in share.messages:
            entry.setdefault("error_code", codes.get((entry["role"], entry["created_at"]), ""))
        share.save(update_fields=["messages"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0015_message_key_refused"),
    ]

    operations = [
        migrations.RunPython(add_refusals, migrations.RunPython.noop),
    ]
