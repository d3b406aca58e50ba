"""The writes of what the apps above share."""

import hashlib
from datetime import timedelta

from django.core.mail import send_mail
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


def mail_unless_paused(kind: str, address: str, pause: timedelta, subject: str, body: str) -> bool:
    """Mail `address` unless a mail of this kind went there within `pause`: False, nothing
    sent. OSError when the mail server fails, and then the pause is not taken. The pause is
    noted before the mail and taken back if it fails, so no transaction stays open while the
    mail server answers (on SQLite it would hold every write meanwhile)."""
    if not address_mail_due(kind, address, pause):
        return False
    try:
        send_mail(subject, body, None, [address])
    except OSError:
        forget_address_mail(kind, address)
        raise
    return True


def _digest(address: str, asked_from: str) -> str:
    key = address.strip().lower() + (f" from {asked_from}" if asked_from else "")
    return hashlib.sha256(key.encode()).hexdigest()
