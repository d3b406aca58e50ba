"""Planning a reply: the reads in front of the upstream request."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatapp.chat import actions
from chatapp.chat.actions import SendRequest
from chatapp.chat.models import Conversation
from chatapp.llm import KNOWN_MODELS
from chatapp.teams.models import TeamPolicy


def test_the_team_policy_and_provider_are_read_once_per_send(member, team):
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=10)
    conversation = Conversation.objects.create(team=team, owner=member, model=KNOWN_MODELS[0])
    request = SendRequest(content="Hello", conversation_id=conversation.pk)
    with CaptureQueriesContext(connection) as queries:
        plan = actions.plan_send(member, None, request)
    assert plan.conversation == conversation
    sql = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert sum('FROM "teams_teampolicy"' in s for s in sql) == 1
    assert sum('FROM "teams_teamprovider"' in s for s in sql) == 1
