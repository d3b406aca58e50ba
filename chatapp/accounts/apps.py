from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "chatapp.accounts"
    label = "accounts"

    def ready(self):
        from chatapp.accounts import signals, sockets  # noqa: F401
