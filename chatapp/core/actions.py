"""The writes of what the apps above share."""

import hashlib
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from chatapp.core.models import AddressMail


def address_mail_due(kind: str, address: str, pause: timedelta) -> bool:
    """Whether a mail of this kind may go to this address: none went in the last `pause`. A
    yes is noted at once, so of requests made together (to any server process) one gets it;
    inside the caller's transaction, a mail that then fails takes the note back with it."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()
    now = timezone.now()
    with transaction.atomic():
        AddressMail.objects.filter(kind=kind, sent_at__lte=now - pause).delete()
        _, created = AddressMail.objects.get_or_create(
            kind=kind, address_digest=digest, defaults={"sent_at": now}
        )
    return created
