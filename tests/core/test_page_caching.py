"""Pages carry a user's data: no cache keeps them, neither a shared proxy nor the browser, whose
Back button would show them again after sign-out (tests/browser/test_signed_out_back.py).
Static files stay cacheable; the JSON API's answers are never cached either
(tests/api/test_conventions.py)."""

import pytest

from chatapp.chat.models import Conversation


@pytest.fixture
def conversation(team, owner):
    return Conversation.objects.create(team=team, owner=owner, title="Quarterly numbers")


@pytest.mark.parametrize(
    "path",
    ["/", "/c/{conversation}/", "/settings/", "/settings/shares/", "/teams/", "/teams/{team}/"],
)
def test_signed_in_pages_are_kept_by_no_cache(owner_in_team, team, conversation, path):
    response = owner_in_team.get(path.format(conversation=conversation.pk, team=team.pk))
    assert response.status_code == 200
    directives = {d.strip() for d in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives
    assert "Cookie" in response["Vary"]


def test_a_page_not_found_is_kept_by_no_cache_either(owner_in_team):
    response = owner_in_team.get("/c/999999/")
    assert response.status_code == 404
    assert "no-store" in response["Cache-Control"]


def test_a_view_that_sets_its_own_caching_keeps_it(owner_in_team):
    response = owner_in_team.get("/static/js/site.js")
    assert response.status_code == 200
    assert "public" in response["Cache-Control"]
    assert "no-store" not in response["Cache-Control"]
