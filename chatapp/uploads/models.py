import uuid
from pathlib import PurePath

from django.conf import settings
from django.core.files.storage import storages
from django.db import models
from django.db.models import Q
from django.http import Http404

from chatapp.teams.models import Membership, SafetyFlag, Team
from chatapp.teams.services import PERMISSIONS


class UploadKind(models.TextChoices):
    IMAGE = "image", "Image"
    DOCUMENT = "document", "Document"


def upload_storage():
    return storages["uploads"]


def stored_name(upload: "Upload", filename: str) -> str:
    """A random name under the team's folder: nothing the user typed reaches the file system."""
    suffix = PurePath(filename).suffix.lower()[:12]
    return f"uploads/{upload.team_id}/{uuid.uuid4().hex}{suffix}"


class UploadQuerySet(models.QuerySet["Upload"]):
    def readable_by(self, user):
        """The user's own uploads, those in conversations the user may read (their own), and
        those of messages Llama Guard flagged in a team whose flags the user reviews."""
        reviews = Membership.objects.filter(user=user, role__in=PERMISSIONS["review_safety"])
        flagged = SafetyFlag.objects.filter(team__in=reviews.values("team")).values("message")
        return self.filter(
            Q(owner=user) | Q(message__conversation__owner=user) | Q(message__in=flagged)
        )

    def unattached(self):
        return self.filter(message__isnull=True)

    def by_message(self) -> dict[int, list["Upload"]]:
        """These uploads grouped by the message they were sent with, in upload order."""
        grouped: dict[int, list[Upload]] = {}
        for upload in self.order_by("id"):
            if upload.message_id is not None:
                grouped.setdefault(upload.message_id, []).append(upload)
        return grouped


class Upload(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads"
    )
    # The team whose storage quota it counts against: the uploader's current team.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="uploads")
    # Set when a message is sent with it; the upload goes with its message.
    message = models.ForeignKey(
        "chat.Message",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
    )
    kind = models.CharField(max_length=10, choices=UploadKind.choices)
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    # A document's text as the model reads it (PDF pages marked); empty for images.
    text = models.TextField(blank=True)
    file = models.FileField(storage=upload_storage, upload_to=stored_name, max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UploadQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(message__isnull=True),
                name="upload_unattached_age",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=UploadKind.values), name="upload_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_image(self) -> bool:
        return self.kind == UploadKind.IMAGE

    def summary(self) -> dict:
        """How a message lists it (conversation.state, the conversation API)."""
        return {
            "id": self.pk,
            "kind": self.kind,
            "name": self.name,
            "content_type": self.content_type,
            "bytes": self.size,
            "width": self.width,
            "height": self.height,
            "pages": self.pages,
        }


def get_upload_for_user(user, upload_id) -> Upload:
    """An upload the user may read, or 404 for a missing id or anyone else's."""
    try:
        return Upload.objects.readable_by(user).get(pk=upload_id)
    except (Upload.DoesNotExist, ValueError, TypeError):
        raise Http404("No such upload") from None
