"""A deleted upload's file goes too, however the row went (its message, conversation, team
or user deleted, or the sweep), once the deletion has committed; a file the storage fails to
delete is logged (django.db.backends) and stays behind."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from chatapp.uploads.models import Upload


@receiver(post_delete, sender=Upload)
def delete_stored_file(sender, instance: Upload, **kwargs) -> None:
    name, storage = instance.file.name, instance.file.storage
    if name:
        # Robust: a storage failing for one file (an S3 outage) is logged, and the other files
        # and whatever else waits for the commit (the deletion told to other tabs) still go.
        transaction.on_commit(lambda: storage.delete(name), robust=True)
