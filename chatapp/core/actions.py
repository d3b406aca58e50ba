"""The writes of what the apps above share."""

import hashlib
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from chatapp.core.models import AddressMail


def address_mail_due(kind: str, address: str, pause: timedelta, *, asked_from: str = "") -> bool:
    """Whether a mail of this kind may go to this address (when asked from `asked_from`, a pause
    of its own): none went in the last `pause`. A yes is noted at once, so of requests made
    together (to any server process) one gets it; inside the caller's transaction, a mail that
    then fails takes the note back with it (else `forget_address_mail` does)."""
    digest = _digest(address, asked_from)
    now = timezone.now()
    with transaction.atomic():
        AddressMail.objects.filter(kind=kind, sent_at__lte=now - pause).delete()
        _, created = AddressMail.objects.get_or_create(
            kind=kind, address_digest=digest, defaults={"sent_at": now}
        )
    return created


def forget_address_mail(kind: str, address: str, *, asked_from: str = "") -> None:
    """The mail `address_mail_due` said yes to could not be sent: it may be asked again now."""
    AddressMail.objects.filter(kind=kind, address_digest=_digest(address, asked_from)).delete()


def _digest(address: str, asked_from: str) -> str:
    key = address.strip().lower() + (f" from {asked_from}" if asked_from else "")
    return hashlib.sha256(key.encode()).hexdigest()
