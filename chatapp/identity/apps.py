from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "chatapp.identity"
    label = "identity"
    verbose_name = "Single sign-on"
