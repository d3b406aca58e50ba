"""Logging out, being deactivated or deleted closes the user's open chat sockets (code 4401)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from chatapp.asgi import application
from chatapp.chat.consumers import ChatConsumer
from tests.chat import conftest as chat
from tests.chat.conftest import FRAME_TIMEOUT
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED = {"type": "websocket.close", "code": 4401}

chat_settings, clean_layer = chat.chat_settings, chat.clean_layer


class Session:
    """A logged-in browser: its own session cookie, and the sockets it opened with it."""

    def __init__(self, user, backend: str | None = None):
        self.client = Client()
        self.client.force_login(user, backend=backend)
        self.cookie = self.client.cookies[django_settings.SESSION_COOKIE_NAME].value
        self.sockets: list[WebsocketCommunicator] = []

    async def open_socket(self) -> WebsocketCommunicator:
        headers = [
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
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

    async def log_in(user, backend: str | None = None) -> Session:
        session = await database_sync_to_async(Session)(user, backend)
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


async def test_a_logout_while_a_socket_opens_still_closes_it(sessions, member, monkeypatch):
    """The session is read before the socket joins its user's group, where a logout is
    announced: a logout in between must not leave the socket signed in."""
    laptop = await sessions(member)
    connect = ChatConsumer.connect

    async def logged_out_meanwhile(consumer):  # the session was read, the socket not set up
        await laptop.log_out()
        await connect(consumer)

    monkeypatch.setattr(ChatConsumer, "connect", logged_out_meanwhile)
    socket = await laptop.open_socket()
    assert await is_closed_as_logged_out(socket)


async def test_a_deactivation_while_a_socket_opens_still_closes_it(sessions, member, monkeypatch):
    laptop = await sessions(member)
    connect = ChatConsumer.connect

    async def deactivated_meanwhile(consumer):
        member.is_active = False
        await member.asave(update_fields=["is_active"])
        await connect(consumer)

    monkeypatch.setattr(ChatConsumer, "connect", deactivated_meanwhile)
    socket = await laptop.open_socket()
    assert await is_closed_as_logged_out(socket)


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


async def test_deactivation_ends_a_single_sign_on_session_too(sessions, member, settings):
    backend = "chatapp.identity.backends.OIDCBackend"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, backend]
    browser = await sessions(member, backend)
    socket = await browser.open_socket()

    member.is_active = False
    await member.asave(update_fields=["is_active"])

    assert await is_closed_as_logged_out(socket)
    assert await is_closed_as_logged_out(await browser.open_socket())


async def test_deletion_closes_all_of_the_users_sockets(sessions, member):
    socket = await (await sessions(member)).open_socket()
    await database_sync_to_async(member.delete)()
    assert await is_closed_as_logged_out(socket)


async def test_other_saves_of_an_active_user_close_nothing(sessions, member):
    socket = await (await sessions(member)).open_socket()
    member.first_name = "Max"
    await member.asave(update_fields=["first_name"])
    assert await still_works(socket)


NEW_PASSWORD = "a-brand-new-passphrase-42"


async def test_changing_ones_password_closes_every_other_sessions_sockets(
    sessions, member, outsider
):
    laptop, phone = await sessions(member), await sessions(member)
    laptop_socket, phone_socket = await laptop.open_socket(), await phone.open_socket()
    someone_else = await (await sessions(outsider)).open_socket()

    data = {
        "old_password": PASSWORD,
        "new_password1": NEW_PASSWORD,
        "new_password2": NEW_PASSWORD,
    }
    response = await database_sync_to_async(laptop.client.post)("/accounts/password/", data)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/done/"

    assert await is_closed_as_logged_out(phone_socket)
    assert await is_closed_as_logged_out(await phone.open_socket())  # its session is invalid
    assert await still_works(laptop_socket)  # the session that changed it carries on
    assert await still_works(someone_else)
    # The changing browser keeps working over HTTP too (its session moved to the new hash).
    page = await database_sync_to_async(laptop.client.get)("/settings/")
    assert page.status_code == 200


async def test_a_wrong_old_password_changes_nothing_and_closes_nothing(sessions, member):
    laptop, phone = await sessions(member), await sessions(member)
    phone_socket = await phone.open_socket()
    data = {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    response = await database_sync_to_async(laptop.client.post)("/accounts/password/", data)
    assert response.status_code == 200
    assert await still_works(phone_socket)


async def test_an_admin_resetting_a_password_closes_all_of_that_users_sockets(
    sessions, member, site_admin
):
    laptop_socket = await (await sessions(member)).open_socket()
    admin = await sessions(site_admin)
    admin_socket = await admin.open_socket()
    url = f"/admin/auth/user/{member.pk}/password/"
    data = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    response = await database_sync_to_async(admin.client.post)(url, data)
    assert response.status_code == 302
    assert await is_closed_as_logged_out(laptop_socket)
    assert await still_works(admin_socket)


async def test_set_password_and_changepassword_close_all_of_the_users_sockets(sessions, member):
    socket = await (await sessions(member)).open_socket()
    member.set_password(NEW_PASSWORD)
    await member.asave()
    assert await is_closed_as_logged_out(socket)

    socket = await (await sessions(member)).open_socket()
    member.set_password(NEW_PASSWORD + "-again")
    await member.asave(update_fields=["password"])
    assert await is_closed_as_logged_out(socket)
