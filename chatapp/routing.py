from django.urls import path

from chatapp.chat.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),  # type: ignore[arg-type]  # Channels' own routing
]
