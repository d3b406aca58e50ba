from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application


class Command(BaseCommand):
    help = "Create (or update) the test provider's people and the chat app's client."

    def add_arguments(self, parser):
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--client-secret", required=True)
        parser.add_argument("--redirect-uri", action="append", default=[])
        parser.add_argument("--logout-uri", action="append", default=[])
        parser.add_argument("--user", action="append", default=[], help="name:password")

    def handle(self, *args, **options):
        for entry in options["user"]:
            name, password = entry.split(":", 1)
            user, _ = get_user_model().objects.get_or_create(username=name)
            user.set_password(password)
            user.save()
        app = Application.objects.filter(client_id=options["client_id"]).first()
        if app is None:
            app = Application(
                client_id=options["client_id"],
                client_secret=options["client_secret"],
                name="Llama team chat",
                client_type=Application.CLIENT_CONFIDENTIAL,
                authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
                algorithm=Application.RS256_ALGORITHM,
                skip_authorization=True,
            )
        uris = set(app.redirect_uris.split()) | set(options["redirect_uri"])
        logout_uris = set(app.post_logout_redirect_uris.split()) | set(options["logout_uri"])
        app.redirect_uris = " ".join(sorted(uris))
        app.post_logout_redirect_uris = " ".join(sorted(logout_uris))
        app.save()
