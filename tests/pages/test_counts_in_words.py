"""A count of one reads in the singular on the pages that count things."""

import re

import pytest

from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions

MODEL = "Llama-3.3-70B-Instruct"


def text_of(response) -> str:
    """The page's words, tags removed and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


@pytest.mark.parametrize(("requests", "words"), [(1, "1 token ("), (2, "2 tokens (")])
def test_the_usage_total_counts_tokens_and_requests(owner_client, owner, team, requests, words):
    for _ in range(requests):
        actions.record_usage(team, owner, MODEL, 1, 0)
    page = text_of(owner_client.get(f"/teams/{team.pk}/usage/"))
    assert words in page
    assert f"in {requests} request{'s' if requests > 1 else ''} to the model." in page


@pytest.mark.parametrize(("limit", "words"), [(1, "1 message"), (3, "3 messages")])
def test_the_rate_limit_on_the_team_page(owner_client, owner, team, limit, words):
    actions.set_policy(owner, team, {"rate_limit_per_minute": limit})
    assert f"{words} a minute per person" in text_of(owner_client.get(f"/teams/{team.pk}/"))


@pytest.mark.parametrize(("count", "words"), [(1, "1 message,"), (2, "2 messages,")])
def test_the_admin_access_page_counts_the_messages(client, site_admin, team, member, count, words):
    conversation = Conversation.objects.create(team=team, owner=member, model="m", title="t")
    for n in range(count):
        Message.objects.create(conversation=conversation, role="user", content=f"q{n}")
    client.force_login(site_admin)
    page = text_of(client.get(f"/site/conversations/{conversation.pk}/access/"))
    assert f"{words} last change" in page
