from django.conf import settings
from django.db import models
from django.db.models import Q


class UserSettings(models.Model):
    """A user's own defaults from the settings page; blank fields fall back to the team's."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_settings"
    )
    model = models.CharField(max_length=200, blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "user settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__isnull=True) | Q(temperature__gte=0, temperature__lte=2),
                name="user_settings_temperature_range",
            ),
            models.CheckConstraint(
                condition=Q(top_p__isnull=True) | Q(top_p__gte=0, top_p__lte=1),
                name="user_settings_top_p_range",
            ),
            models.CheckConstraint(
                condition=Q(max_tokens__isnull=True) | Q(max_tokens__gte=1),
                name="user_settings_max_tokens_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"Settings of {self.user}"


class PendingSignup(models.Model):
    """An account a signup made (SIGNUP_POLICY=domain) whose address is not proved yet: only
    such an account gives way to the next signup or sign-in with its address, never one a site
    admin deactivated before it was first used."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pending_signup"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Wrong passwords typed on its confirmation page, which ends the signup after a few.
    wrong_passwords = models.PositiveSmallIntegerField(default=0, db_default=0)

    def __str__(self) -> str:
        return f"Signup of {self.user} to confirm"
