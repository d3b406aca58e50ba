"""A deleted upload's file goes too, however the row went (its message, conversation, team
or user deleted, or the sweep), once the deletion has committed."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from chatapp.uploads.models import Upload


@receiver(post_delete, sender=Upload)
def delete_stored_file(sender, instance: Upload, **kwargs) -> None:
    name, storage = instance.file.name, instance.file.storage
    if name:
        transaction.on_commit(lambda: storage.delete(name))
