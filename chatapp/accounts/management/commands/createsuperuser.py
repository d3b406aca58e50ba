"""Django's createsuperuser, saying so when another account has the e-mail address (in any
letter case, the unique index of migration accounts.0004) rather than failing on the index,
and refusing a username that could pass for another's (chatapp.accounts.usernames)."""

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import createsuperuser
from django.core.management import CommandError
from django.db import IntegrityError

from chatapp.accounts.usernames import lookalike_refusal

# The unique index on UPPER(email) that migration accounts.0004 adds.
EMAIL_INDEX = "accounts_user_email_unique_ci"


def address_taken(email: str, database: str) -> bool:
    users = get_user_model()._default_manager.db_manager(database)
    return bool(email) and users.filter(email__iexact=email).exists()


class Command(createsuperuser.Command):
    def _validate_username(self, username, verbose_field_name, database):
        error = super()._validate_username(username, verbose_field_name, database)
        if error or not username:
            return error
        refusal = lookalike_refusal(username)
        return f"Error: {refusal}" if refusal else None

    def get_input_data(self, field, message, default=None):
        value = super().get_input_data(field, message, default)
        if field.name == "email" and value and address_taken(value, self.database):
            self.stderr.write("Error: Another account already has this email address.")
            return None  # asked again
        if field.name == "email":
            self.typed_email = value
        return value

    def handle(self, *args, **options):
        self.database = options["database"]
        self.typed_email = ""
        given = options.get("email")
        if given is None and not options["interactive"]:
            given = os.environ.get("DJANGO_SUPERUSER_EMAIL")
        if given and address_taken(given, self.database):
            raise CommandError(
                f"Another account already has the email address {given}: nothing was created."
                " Choose another address, or change that account's in /admin/."
            )
        try:
            return super().handle(*args, **options)
        except IntegrityError as error:
            if EMAIL_INDEX not in str(error):
                raise
            # Taken by someone else while the password was typed.
            raise CommandError(
                f"Another account took the email address {self.typed_email or given} meanwhile:"
                " nothing was created. Choose another address."
            ) from None
