"""The websocket route's session middleware: the user's session in the scope, send untouched."""

import pytest
from django.conf import settings

from chatapp.core.middleware import websocket_auth_stack

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_socket_gets_its_users_session_and_sends_straight_to_the_server(
    async_client, django_user_model
):
    user = await django_user_model.objects.acreate(username="ada")
    await async_client.aforce_login(user)
    cookie = (
        f"{settings.SESSION_COOKIE_NAME}={async_client.cookies[settings.SESSION_COOKIE_NAME].value}"
    )
    seen = {}

    async def consumer(scope, receive, send):
        seen["session_key"] = scope["session"].session_key
        seen["user_id"] = scope["user"].pk
        seen["send"] = send

    async def server_send(message):
        pass

    scope = {"type": "websocket", "path": "/ws/chat/", "headers": [(b"cookie", cookie.encode())]}
    await websocket_auth_stack(consumer)(scope, None, server_send)

    assert seen["user_id"] == user.pk
    assert seen["session_key"] == async_client.cookies[settings.SESSION_COOKIE_NAME].value
    # No wrapper around send: a websocket never sends the message a session save rides on.
    assert seen["send"] is server_send
