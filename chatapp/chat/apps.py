from django.apps import AppConfig
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate

from chatapp.chat.search_index import register_sqlite_function, repair_sqlite_index
from chatapp.core import processes, stopping


def repair_search_index(using: str = "default", **kwargs) -> None:
    repair_sqlite_index(connections[using])


class ChatConfig(AppConfig):
    name = "chatapp.chat"
    label = "chat"

    def ready(self) -> None:
        # SQLite's search triggers call a Python function each connection registers.
        connection_created.connect(register_sqlite_function)
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None:
                register_sqlite_function(connection)
        # A migration that alters a table on SQLite rebuilds it without the search triggers.
        post_migrate.connect(repair_search_index, sender=self)
        # Both read the models: only once apps are loaded. The signals stop the answers of a
        # team or user deleted under them.
        from chatapp.chat import generation, openai_api, reaper, signals  # noqa: F401
        from chatapp.chat.actions.conversations import (
            teams_holding_others,
            teams_with_conversations_of,
        )
        from chatapp.teams.actions import keep_teams_holding, note_teams_with_data_of

        # Deleting a user keeps their personal team while it holds former members' chats.
        keep_teams_holding(teams_holding_others)
        # A legal hold on a team keeps its conversations' owners from being deleted.
        note_teams_with_data_of(teams_with_conversations_of)

        # A deploy or restart (SIGTERM) saves the answers streaming here before the exit.
        stopping.when_stopping(generation.end_all)
        stopping.when_stopping(openai_api.end_all)  # and counts the API answers relayed here
        # A server process that died (SIGKILL, a crash): its supervisor ends its answers.
        processes.when_process_ends(reaper.end_answers_of)
