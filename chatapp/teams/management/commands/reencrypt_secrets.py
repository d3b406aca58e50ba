from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from chatapp.core.words import counted
from chatapp.teams import crypto

# Every model field holding a crypto token is named so: team provider keys, tool server tokens.
SUFFIX = "_encrypted"


def encrypted_fields() -> list[tuple[type, str]]:
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if field.name.endswith(SUFFIX)
    ]


class Command(BaseCommand):
    help = (
        "Encrypt every stored secret (team provider keys, tool server tokens) with the current"
        " key: FIELD_ENCRYPTION_KEY, else SECRET_KEY. Run it after changing either, while the"
        " old value is still readable (an earlier SECRET_KEY in SECRET_KEY_FALLBACKS); then the"
        " old value may go."
    )

    def handle(self, *args, **options):
        done, unreadable = 0, []
        for model, name in encrypted_fields():
            rows = model.objects.exclude(**{name: ""}).values_list("pk", name)
            for pk, token in rows.iterator():
                try:
                    fresh = crypto.reencrypt(token)
                except crypto.KeyUnreadable:
                    unreadable.append(f"{model._meta.verbose_name} {pk}")
                    continue
                # Only if unchanged meanwhile: a key entered since is already current.
                done += model.objects.filter(pk=pk, **{name: token}).update(**{name: fresh})
        self.stdout.write(f"{counted(done, 'stored secret')} encrypted with the current key.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} could not be read with any key this server has, and stay as"
                f" they were: {', '.join(unreadable)}. Their teams' owners must enter them again."
            )
