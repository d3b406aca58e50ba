from django.db import models


class AddressMail(models.Model):
    """When a mail of one kind last went to an address (a SHA-256 of it, never the address):
    one such mail a while per address, however many server processes are asked to send it."""

    kind = models.CharField(max_length=40)
    address_digest = models.CharField(max_length=64)
    sent_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "address_digest"], name="address_mail_once")
        ]

    def __str__(self) -> str:
        return f"{self.kind} mail at {self.sent_at:%Y-%m-%d %H:%M}"
