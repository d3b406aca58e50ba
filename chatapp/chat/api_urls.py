from django.urls import path

from chatapp.accounts import api as accounts_api
from chatapp.chat import api

urlpatterns = [
    path("conversations/", api.conversation_list, name="api-conversations"),
    path(
        "conversations/<int:conversation_id>/",
        api.conversation_detail,
        name="api-conversation",
    ),
    path(
        "conversations/<int:conversation_id>/export",
        api.conversation_export,
        name="api-conversation-export",
    ),
    path("models/", api.model_list, name="api-models"),
    path("settings/", accounts_api.user_settings, name="api-settings"),
]
