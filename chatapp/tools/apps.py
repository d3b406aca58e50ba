from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "chatapp.tools"
    label = "tools"
