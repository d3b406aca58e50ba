"""Bad frames and other people's ids: an error frame, nothing changed, the socket still works."""

import asyncio
import json
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chatapp.asgi import application
from chatapp.chat.models import Conversation, Message
from chatapp.teams.models import Membership, Role, SystemPrompt, Team

pytestmark = pytest.mark.django_db(transaction=True)

SEND = {"type": "chat.send", "request_id": "req-7", "conversation_id": None}
BAD_FRAMES = [
    ("not json", "invalid_json"),
    ("[" * 8000 + "]" * 8000, "invalid_json"),  # deeper than the JSON parser goes
    ("[1, 2]", "invalid_frame"),
    ('"chat.send"', "invalid_frame"),
    ({}, "unknown_type"),
    ({"type": "chat.dance"}, "unknown_type"),
    (SEND, "invalid_frame"),
    ({**SEND, "content": 5}, "invalid_frame"),
    ({**SEND, "content": "   \n"}, "empty_content"),
    ({**SEND, "content": "x" * 101}, "content_too_large"),
    ({**SEND, "content": "é" * 51}, "content_too_large"),
    ({**SEND, "content": "hi", "conversation_id": "1"}, "invalid_frame"),
    ({**SEND, "content": "hi", "conversation_id": True}, "invalid_frame"),
    ({**SEND, "content": "hi", "system_prompt_id": 0}, "invalid_frame"),
    ({**SEND, "content": "hi", "request_id": 5}, "invalid_frame"),
    ({**SEND, "content": "hi", "attachments": [2**63]}, "invalid_frame"),
    ({**SEND, "content": "hi", "attachments": [10**30]}, "invalid_frame"),
    ({**SEND, "content": "hi", "settings": []}, "invalid_frame"),
    ({**SEND, "content": "hi", "settings": {"colour": "red"}}, "invalid_frame"),
    ({**SEND, "content": "hi", "settings": {"temperature": 9}}, "invalid_setting"),
    ({**SEND, "content": "hi", "settings": {"top_p": "high"}}, "invalid_setting"),
    ({**SEND, "content": "hi", "settings": {"temperature": 10**400}}, "invalid_setting"),
    ({**SEND, "content": "hi", "settings": {"model": "gpt-4"}}, "model_not_allowed"),
    ({**SEND, "content": "hi", "settings": {"system_prompt": 3}}, "invalid_frame"),
    # Text no database or upstream takes: lone surrogates, NUL (PostgreSQL refuses it).
    ({**SEND, "content": "hi \ud800 there"}, "invalid_text"),
    ({**SEND, "content": "\udfff"}, "invalid_text"),
    ({**SEND, "content": "hi\x00"}, "invalid_text"),
    ({**SEND, "content": "hi", "settings": {"system_prompt": "Be \ud83d brief"}}, "invalid_text"),
    ({**SEND, "content": "hi", "settings": {"system_prompt": "Be\x00brief"}}, "invalid_text"),
    ({**SEND, "content": "hi", "conversation_id": 999_999}, "not_found"),
    ({**SEND, "content": "hi", "system_prompt_id": 999_999}, "not_found"),
    ({**SEND, "content": "hi", "conversation_id": 2**63}, "invalid_frame"),
    ({**SEND, "content": "hi", "team_id": "1"}, "invalid_frame"),
    ({**SEND, "content": "hi", "team_id": False}, "invalid_frame"),
    ({**SEND, "content": "hi", "team_id": 10**30}, "invalid_frame"),
    ({**SEND, "content": "hi", "team_id": 999_999}, "not_found"),
    ({**SEND, "content": "hi", "team_id": 1, "conversation_id": 1}, "invalid_frame"),
    ({"type": "chat.stop"}, "invalid_frame"),
    ({"type": "chat.stop", "message_id": True}, "invalid_frame"),
    ({"type": "chat.stop", "message_id": 999_999}, "not_found"),
    ({"type": "chat.stop", "message_id": 999_999, "request_id": 123}, "invalid_frame"),
    ({"type": "chat.regenerate", "message_id": -3}, "invalid_frame"),
    ({"type": "chat.regenerate", "message_id": 999_999}, "not_found"),
    ({"type": "chat.subscribe"}, "invalid_frame"),
    ({"type": "chat.subscribe", "conversation_id": 1.5}, "invalid_frame"),
    # A page showing no conversation checks its connection with this one.
    ({"type": "chat.subscribe", "conversation_id": None, "request_id": "c"}, "invalid_frame"),
    ({"type": "chat.subscribe", "conversation_id": 999_999}, "not_found"),
    ({"type": "chat.subscribe", "conversation_id": 1, "request_id": {"x": 1}}, "invalid_frame"),
    ({"type": "chat.switch", "message_id": 1, "request_id": ["r"]}, "invalid_frame"),
]


async def counts() -> tuple[int, int]:
    return await Conversation.objects.acount(), await Message.objects.acount()


async def test_every_bad_frame_gets_an_error_and_changes_nothing(connect, member, sim, settings):
    settings.CHAT_MAX_CONTENT_BYTES = 100
    socket = await connect(member)
    for frame, code in BAD_FRAMES:
        reply = await socket.expect_error(frame)
        assert reply["error"]["code"] == code, (frame, reply)
        assert reply["error"]["message"]
        expected_id = frame.get("request_id") if isinstance(frame, dict) else None
        assert reply["request_id"] == (expected_id if isinstance(expected_id, str) else None)
    assert await counts() == (0, 0)
    assert sim.requests == []
    ids = await socket.send_message("Still works")
    assert (await socket.until_type("message.done", ids["message_id"]))[-1]["status"] == "complete"


async def test_binary_frames_are_refused(connect, member):
    socket = await connect(member)
    await socket.communicator.send_to(bytes_data=b"\x00\x01")
    reply = await socket.receive()
    assert (reply["type"], reply["error"]["code"]) == ("error", "invalid_frame")


async def test_anonymous_socket_is_closed_with_4401(sim):
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    connected, _ = await communicator.connect()
    assert connected
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}
    await communicator.wait()


async def test_foreign_origin_is_refused(member):
    communicator = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def handshake(host: str, origin: str | None, **scope) -> bool:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    communicator.scope.update(scope)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.com:8443",  # another port
        "http://chat.example.com:8080",
        "http://chat.example.com",  # plain http for an https site
        "https://chat.example.com.evil.example",
        "https://evil.example",
        "null",
        "",
        None,
    ],
)
async def test_only_the_sites_own_origin_opens_a_socket(settings, origin):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.SECURE_SSL_REDIRECT = True  # an https site
    assert await handshake("chat.example.com", "https://chat.example.com")
    assert await handshake("chat.example.com:443", "https://chat.example.com")
    assert not await handshake("chat.example.com", origin)


async def test_the_origin_follows_the_sites_scheme_and_port(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    assert await handshake("chat.example.com:8000", "http://chat.example.com:8000")
    assert not await handshake("chat.example.com:8000", "http://chat.example.com")
    assert not await handshake("chat.example.com:8000", "https://chat.example.com:8000")
    # TLS seen by the server itself, or by a trusted proxy that says so.
    assert await handshake("chat.example.com", "https://chat.example.com", scheme="wss")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[
            (b"host", b"chat.example.com"),
            (b"origin", b"https://chat.example.com"),
            (b"x-forwarded-proto", b"https"),
        ],
    )
    assert (await proxied.connect())[0]
    await proxied.disconnect()


async def test_a_host_outside_allowed_hosts_is_refused_even_from_its_own_origin(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    assert not await handshake("evil.example", "http://evil.example")


async def test_trusted_origins_may_open_sockets(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.com", "https://*.corp.example"]
    assert await handshake("chat.example.com", "https://portal.example.com")
    assert await handshake("chat.example.com", "https://eu.corp.example")
    assert not await handshake("chat.example.com", "http://portal.example.com")
    assert not await handshake("chat.example.com", "https://portal.example.com:8443")
    assert not await handshake("chat.example.com", "https://corp.example.evil.example")


@database_sync_to_async
def outsiders_conversation(outsider) -> tuple[Conversation, Message, Message]:
    team = Team.objects.create(name="Elsewhere")
    Membership.objects.create(team=team, user=outsider, role=Role.OWNER)
    conversation = Conversation.objects.create(
        team=team, owner=outsider, title="Private", model="m"
    )
    question = Message.objects.create(conversation=conversation, role="user", content="secret?")
    answer = Message.objects.create(conversation=conversation, role="assistant", content="yes")
    return conversation, question, answer


async def test_other_peoples_ids_are_not_found_and_untouched(connect, member, outsider, sim):
    conversation, question, answer = await outsiders_conversation(outsider)
    foreign_prompt = await SystemPrompt.objects.acreate(
        team_id=conversation.team_id, name="Theirs", content="Leak me"
    )
    socket = await connect(member)
    frames = [
        {**SEND, "content": "mine now", "conversation_id": conversation.pk},
        {**SEND, "content": "use theirs", "system_prompt_id": foreign_prompt.pk},
        {"type": "chat.stop", "message_id": answer.pk},
        {"type": "chat.regenerate", "message_id": answer.pk},
        {"type": "chat.subscribe", "conversation_id": conversation.pk},
    ]
    for frame in frames:
        reply = await socket.expect_error(frame)
        assert reply["error"]["code"] == "not_found", frame
        assert "secret" not in str(reply) and "Leak" not in str(reply)
    assert await counts() == (1, 2)
    assert (await Message.objects.aget(pk=answer.pk)).content == "yes"
    assert sim.requests == []
    assert await socket.nothing_more()


async def test_a_stop_for_someone_elses_stream_does_not_stop_it(connect, member, outsider, sim):
    theirs = await connect(outsider)
    ids = await theirs.send_message("Slow [sim:long tokens=60] [sim:pace tps=60]")
    mine = await connect(member)
    reply = await mine.expect_error({"type": "chat.stop", "message_id": ids["message_id"]})
    assert reply["error"]["code"] == "not_found"
    done = await theirs.until_type("message.done", ids["message_id"])
    assert done[-1]["status"] == "complete"


async def test_content_at_the_limit_is_accepted_however_the_client_escapes_it(
    connect, member, sim, settings
):
    settings.CHAT_MAX_CONTENT_BYTES = 20_000
    socket = await connect(member)
    frame = {**SEND, "content": "é" * 10_000}  # 20,000 bytes of UTF-8; 60,000 characters escaped
    await socket.communicator.send_to(text_data=json.dumps(frame, ensure_ascii=True))
    frames = await socket.until_type("message.done")
    assert frames[-1]["status"] == "complete"
    assert (await Message.objects.aget(role="user")).content == "é" * 10_000


async def test_a_custom_system_prompt_may_be_as_long_as_a_team_prompt(connect, member, sim):
    socket = await connect(member)
    too_long = {**SEND, "content": "hi", "settings": {"system_prompt": "x" * 20_001}}
    reply = await socket.expect_error(too_long)
    assert (reply["error"]["code"], reply["error"]["field"]) == (
        "content_too_large",
        "system_prompt",
    )
    assert await counts() == (0, 0)
    assert sim.requests == []
    prompt = "Answer briefly. " * 1250  # 20,000 characters
    ids = await socket.send_message("Hi", settings={"system_prompt": prompt})
    assert (await socket.until_type("message.done", ids["message_id"]))[-1]["status"] == "complete"
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": prompt}


async def test_frames_that_are_not_json_count_against_the_rate_limit(connect, member, settings):
    settings.CHAT_WS_MESSAGES_PER_MINUTE = 3
    socket = await connect(member)
    for _ in range(3):
        assert (await socket.expect_error("not json"))["error"]["code"] == "invalid_json"
    assert (await socket.expect_error("not json"))["error"]["code"] == "rate_limited"
    await socket.communicator.send_to(bytes_data=b"\x00")
    assert (await socket.receive())["error"]["code"] == "rate_limited"
    limited = await socket.expect_error({"type": "chat.subscribe", "conversation_id": 1})
    assert limited["error"]["code"] == "rate_limited"


async def test_a_frame_refused_for_the_frame_rate_names_its_request(connect, member, settings):
    """The chat page matches a refusal to its send by request_id: without it, a send refused
    for the rate stayed pending, its text out of the composer and the page busy."""
    settings.CHAT_WS_MESSAGES_PER_MINUTE = 1
    socket = await connect(member)
    assert (await socket.expect_error("not json"))["error"]["code"] == "invalid_json"
    limited = await socket.expect_error({**SEND, "content": "Hello", "request_id": "send-9"})
    assert (limited["error"]["code"], limited["request_id"]) == ("rate_limited", "send-9")
    assert await counts() == (0, 0)


async def test_a_frame_is_handled_while_the_database_thread_is_busy(connect, member):
    """A frame waits for the database only when its handler needs it: nothing in front of
    the handler queues behind the thread that runs every ORM call."""
    socket = await connect(member)
    release = threading.Event()
    busy = asyncio.ensure_future(database_sync_to_async(release.wait)(10))
    try:
        reply = await socket.expect_error({"type": "chat.dance"})
        assert reply["error"]["code"] == "unknown_type"
        assert not busy.done()
    finally:
        release.set()
        await busy


async def test_a_subscribe_refused_while_its_state_is_read_names_its_request(
    connect, member, monkeypatch
):
    """The conversation deleted (in another tab) between the subscribe's check and the read of
    its state: the error still carries the frame's request_id, as every refusal does."""
    from chatapp.chat import consumers

    conversation = await Conversation.objects.acreate(
        team=await Team.objects.aget(memberships__user=member), owner=member, model="m"
    )
    check = consumers.lookups.check_conversation

    def deleted_meanwhile(user, conversation_id):
        check(user, conversation_id)
        Conversation.objects.filter(pk=conversation_id).delete()

    monkeypatch.setattr(consumers.lookups, "check_conversation", deleted_meanwhile)
    socket = await connect(member)
    frame = {"type": "chat.subscribe", "conversation_id": conversation.pk, "request_id": "s-1"}
    reply = await socket.expect_error(frame)
    assert (reply["error"]["code"], reply["request_id"]) == ("not_found", "s-1")


async def test_sockets_per_user_are_capped(connect, member, owner, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    first, second = await connect(member), await connect(member)
    extra = await connect(member)
    closed = await extra.communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4429}
    # The refused socket took no place, the others still work, and other people are not counted.
    reply = await second.expect_error({"type": "chat.subscribe", "conversation_id": 404})
    assert reply["error"]["code"] == "not_found"
    await connect(owner)
    # A closed socket frees its place.
    await first.communicator.disconnect()
    again = await connect(member)
    reply = await again.expect_error({"type": "chat.subscribe", "conversation_id": 404})
    assert reply["error"]["code"] == "not_found"
