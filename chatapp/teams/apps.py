from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "chatapp.teams"
    label = "teams"
