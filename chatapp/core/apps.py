from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "chatapp.core"
    label = "core"
