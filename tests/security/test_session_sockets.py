"""Logging out, being deactivated or deleted closes the user's open chat sockets (code 4401)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from chatapp.asgi import application
from tests.chat import conftest as chat
from tests.chat.conftest import FRAME_TIMEOUT

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED = {"type": "websocket.close", "code": 4401}

chat_settings, clean_layer = chat.chat_settings, chat.clean_layer


class Session:
    """A logged-in browser: its own session cookie, and the sockets it opened with it."""

    def __init__(self, user):
        self.client = Client()
        self.client.force_login(user)
        self.cookie = self.client.cookies[django_settings.SESSION_COOKIE_NAME].value
        self.sockets: list[WebsocketCommunicator] = []

    async def open_socket(self) -> WebsocketCommunicator:
        headers = [
            (b"origin", b"http://127.0.0.1"),
            (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={self.cookie}".encode()),
        ]
        socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await socket.connect(timeout=FRAME_TIMEOUT)
        assert connected
        self.sockets.append(socket)
        return socket

    async def log_out(self) -> None:
        response = await database_sync_to_async(self.client.post)("/accounts/logout/")
        assert response.status_code == 302


@pytest.fixture
async def sessions():
    opened: list[Session] = []

    async def log_in(user) -> Session:
        session = await database_sync_to_async(Session)(user)
        opened.append(session)
        return session

    yield log_in
    for session in opened:
        for socket in session.sockets:
            await socket.disconnect()


async def is_closed_as_logged_out(socket: WebsocketCommunicator) -> bool:
    return await socket.receive_output(timeout=FRAME_TIMEOUT) == CLOSED


async def still_works(socket: WebsocketCommunicator) -> bool:
    await socket.send_json_to({"type": "chat.dance"})
    reply = await socket.receive_json_from(timeout=FRAME_TIMEOUT)
    return reply["error"]["code"] == "unknown_type"


async def test_logout_closes_every_socket_of_that_session_only(sessions, member, outsider):
    laptop = await sessions(member)
    tab_one, tab_two = await laptop.open_socket(), await laptop.open_socket()
    phone = await (await sessions(member)).open_socket()
    someone_else = await (await sessions(outsider)).open_socket()

    await laptop.log_out()

    assert await is_closed_as_logged_out(tab_one)
    assert await is_closed_as_logged_out(tab_two)
    assert await still_works(phone)  # another session of the same user is still valid
    assert await still_works(someone_else)


async def test_a_closed_session_cannot_open_a_new_socket(sessions, member):
    laptop = await sessions(member)
    await laptop.open_socket()
    await laptop.log_out()
    assert await is_closed_as_logged_out(laptop.sockets[0])
    assert await is_closed_as_logged_out(await laptop.open_socket())


async def test_deactivation_closes_all_of_the_users_sockets(sessions, member, outsider):
    laptop, phone = await sessions(member), await sessions(member)
    sockets = [await laptop.open_socket(), await phone.open_socket()]
    someone_else = await (await sessions(outsider)).open_socket()

    member.is_active = False
    await member.asave(update_fields=["is_active"])

    for socket in sockets:
        assert await is_closed_as_logged_out(socket)
    assert await is_closed_as_logged_out(await laptop.open_socket())
    assert await still_works(someone_else)


async def test_deletion_closes_all_of_the_users_sockets(sessions, member):
    socket = await (await sessions(member)).open_socket()
    await database_sync_to_async(member.delete)()
    assert await is_closed_as_logged_out(socket)


async def test_other_saves_of_an_active_user_close_nothing(sessions, member):
    socket = await (await sessions(member)).open_socket()
    member.first_name = "Max"
    await member.asave(update_fields=["first_name"])
    assert await still_works(socket)
