"""The websocket route's session middleware: the user's session in the scope, send untouched."""

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connections
from django.test import Client

from chatapp.core.middleware import websocket_auth_stack

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signed_in(django_user_model) -> tuple[int, str]:
    """A user's id and the key of their session."""
    user = django_user_model.objects.create(username="ada")
    client = Client()
    client.force_login(user)
    return user.pk, client.cookies[settings.SESSION_COOKIE_NAME].value


async def test_a_socket_gets_its_users_session_and_sends_straight_to_the_server(signed_in):
    user_id, session_key = signed_in
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()
    seen = {}

    async def consumer(scope, receive, send):
        seen["session_key"] = scope["session"].session_key
        seen["user_id"] = scope["user"].pk
        seen["send"] = send

    async def server_send(message):
        pass

    scope = {"type": "websocket", "path": "/ws/chat/", "headers": [(b"cookie", cookie)]}
    try:
        await websocket_auth_stack(consumer)(scope, None, server_send)
    finally:  # the ORM thread keeps its connection: close it so the test database can go
        await database_sync_to_async(connections.close_all)()

    assert seen["user_id"] == user_id
    assert seen["session_key"] == session_key
    # No wrapper around send: a websocket never sends the message a session save rides on.
    assert seen["send"] is server_send


async def test_a_session_cookie_holding_a_nul_opens_an_anonymous_socket():
    """As on pages (tests/core/test_sessions.py): no session, an anonymous user."""
    cookie = f'{settings.SESSION_COOKIE_NAME}="\\000abcdefghijklmnop"'.encode()
    seen = {}

    async def consumer(scope, receive, send):
        seen["session_key"] = scope["session"].session_key
        seen["authenticated"] = scope["user"].is_authenticated

    scope = {"type": "websocket", "path": "/ws/chat/", "headers": [(b"cookie", cookie)]}
    try:
        await websocket_auth_stack(consumer)(scope, None, None)
    finally:
        await database_sync_to_async(connections.close_all)()

    assert seen == {"session_key": None, "authenticated": False}
