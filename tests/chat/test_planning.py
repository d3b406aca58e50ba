"""Planning a reply: the reads in front of the upstream request."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatapp.chat import planning
from chatapp.chat.actions import replies
from chatapp.chat.models import Conversation
from chatapp.chat.requests import SendRequest
from chatapp.llm import KNOWN_MODELS
from chatapp.teams.models import RecentRequest, TeamPolicy


def test_the_team_policy_and_provider_are_read_once_per_send(member, team):
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=10)
    conversation = Conversation.objects.create(team=team, owner=member, model=KNOWN_MODELS[0])
    request = SendRequest(content="Hello", conversation_id=conversation.pk)
    with CaptureQueriesContext(connection) as queries:
        plan = replies.admit_send(member, None, request, "r1")
    assert plan.conversation == conversation
    sql = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert sum('FROM "teams_teampolicy"' in s for s in sql) == 1
    assert sum('FROM "teams_teamprovider"' in s for s in sql) == 1


def test_planning_writes_nothing(member, team):
    """Admission and the rows are the replies' writes; planning only reads."""
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=10)
    conversation = Conversation.objects.create(team=team, owner=member, model=KNOWN_MODELS[0])
    for request, new_in in [
        (SendRequest(content="Hello", conversation_id=conversation.pk), None),
        (SendRequest(content="Hello", settings={"temperature": 0.2}), team),
    ]:
        with CaptureQueriesContext(connection) as queries:
            plan = planning.plan_send(member, request, team=new_in, request_id="r1")
        statements = [q["sql"].split()[0] for q in queries.captured_queries]
        assert set(statements) == {"SELECT"}, statements
        assert plan.request_id == "r1"
    assert Conversation.objects.count() == 1
    assert not RecentRequest.objects.exists()
