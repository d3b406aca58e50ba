from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

from chatapp.chat.search_index import repair_sqlite_index
from chatapp.core import stopping


def repair_search_index(using: str = "default", **kwargs) -> None:
    repair_sqlite_index(connections[using])


class ChatConfig(AppConfig):
    name = "chatapp.chat"
    label = "chat"

    def ready(self) -> None:
        # A migration that alters a table on SQLite rebuilds it without the search triggers.
        post_migrate.connect(repair_search_index, sender=self)
        # Both read the models: only once apps are loaded. The signals stop the answers of a
        # team or user deleted under them.
        from chatapp.chat import generation, signals  # noqa: F401

        # A deploy or restart (SIGTERM) saves the answers streaming here before the exit.
        stopping.when_stopping(generation.end_all)
