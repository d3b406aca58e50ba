"""A key echoed in upstream error text never reaches a user, wherever the text is cut."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chatapp.chat.models import Message
from chatapp.llm.errors import DETAIL_LIMIT

from .conftest import SIM_KEY

pytestmark = pytest.mark.django_db(transaction=True)

# The simulator's detail: dots, then " Rejected credentials: Bearer <key>".
KEY_OFFSET = len(" Rejected credentials: Bearer ")


def key_pieces(key: str, size: int = 5) -> list[str]:
    return [key[i : i + size] for i in range(len(key) - size + 1)]


@database_sync_to_async
def everything_shown(user, conversation_id: int) -> str:
    client = Client()
    client.force_login(user)
    base = f"/api/conversations/{conversation_id}/"
    pages = [client.get(base), *[client.get(f"{base}export?format={f}") for f in ("json", "md")]]
    assert all(page.status_code == 200 for page in pages)
    return "\n".join(page.content.decode() for page in pages)


@pytest.mark.parametrize("cut", [1, len(SIM_KEY) // 2, len(SIM_KEY) - 1])
async def test_a_key_straddling_the_cut_is_redacted_everywhere(connect, member, sim, cut):
    # `cut` characters of the key fall before the detail's limit, the rest after it.
    pad = DETAIL_LIMIT - KEY_OFFSET - cut
    socket = await connect(member)
    ids = await socket.send_message(f"Hi [sim:fault=400 echo_auth pad={pad}]")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "bad_request"
    assert "Rejected credentials" in error["message"]  # the detail itself is shown
    stored = await Message.objects.aget(pk=ids["message_id"])
    shown = [error["message"], stored.error_message]
    shown.append(await everything_shown(member, ids["conversation_id"]))
    for text in shown:
        assert not [piece for piece in key_pieces(SIM_KEY) if piece in text], text
