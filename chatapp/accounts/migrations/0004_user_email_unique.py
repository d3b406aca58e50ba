"""One account per e-mail address in any letter case, held by the database: a unique index on
UPPER(email) (as Django's `iexact`, which every check of the address uses), blank addresses
aside. The user model is Django's, so the index is added here, outside its model state.

Addresses two accounts already share are settled first: the account that keeps one is a
confirmed one before a signup never confirmed, then the oldest; the others' address is
cleared (their username and how to sign in stay; a site admin may set a new address)."""

from django.conf import settings
from django.db import migrations
from django.db.models import Count, Exists, OuterRef, Q, UniqueConstraint
from django.db.models.functions import Upper

NAME = "accounts_user_email_unique_ci"


def _constraint() -> UniqueConstraint:
    return UniqueConstraint(Upper("email"), name=NAME, condition=~Q(email=""))


def settle_shared_addresses(apps, schema_editor) -> None:
    User = apps.get_model(settings.AUTH_USER_MODEL)
    PendingSignup = apps.get_model("accounts", "PendingSignup")
    shared = (
        User.objects.exclude(email="")
        .annotate(address=Upper("email"))
        .values("address")
        .annotate(accounts=Count("pk"))
        .filter(accounts__gt=1)
        .values_list("address", flat=True)
    )
    unconfirmed = Exists(PendingSignup.objects.filter(user=OuterRef("pk")))
    for address in list(shared):
        holders = (
            User.objects.annotate(address=Upper("email"), unconfirmed=unconfirmed)
            .filter(address=address)
            .order_by("unconfirmed", "pk")
        )
        keeper, *others = holders
        User.objects.filter(pk__in=[user.pk for user in others]).update(email="")
        names = ", ".join(user.username for user in others)
        print(f"\n  Cleared the e-mail address of {names}: {keeper.username} has the same one.")


def add_index(apps, schema_editor) -> None:
    schema_editor.add_constraint(apps.get_model(settings.AUTH_USER_MODEL), _constraint())


def remove_index(apps, schema_editor) -> None:
    schema_editor.remove_constraint(apps.get_model(settings.AUTH_USER_MODEL), _constraint())


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_pending_signup"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        # After the user table's last change: on SQLite a change remakes the table from the
        # model's state, which does not know this index (the first test of
        # tests/accounts/test_email_unique.py fails if a newer one drops it).
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(settle_shared_addresses, migrations.RunPython.noop),
        migrations.RunPython(add_index, remove_index),
    ]
