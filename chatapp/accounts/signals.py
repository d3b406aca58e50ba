from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver


@receiver(post_save, sender=get_user_model())
def make_first_user_site_admin(sender, instance, created, **kwargs):
    """The first account ever created administers the site, however it was created."""
    if not created or (instance.is_staff and instance.is_superuser):
        return
    if sender.objects.order_by("pk").values_list("pk", flat=True).first() == instance.pk:
        sender.objects.filter(pk=instance.pk).update(is_staff=True, is_superuser=True)
        instance.is_staff = instance.is_superuser = True
