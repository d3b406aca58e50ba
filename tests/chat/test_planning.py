"""Planning a reply: the reads in front of the upstream request."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatapp.chat import planning, tooling
from chatapp.chat.actions import replies
from chatapp.chat.errors import ChatError
from chatapp.chat.models import Conversation, Message, MessageStatus
from chatapp.chat.requests import RegenerateRequest, SendRequest
from chatapp.llm import KNOWN_MODELS, count_message_tokens
from chatapp.teams.models import RecentRequest, SafetyFlag, TeamPolicy
from tests.support.plans import finds_rows_by


def statements_reading(table: str, queries: CaptureQueriesContext) -> int:
    return sum(
        q["sql"].startswith("SELECT") and f'"{table}"' in q["sql"] for q in queries.captured_queries
    )


def test_a_send_reads_its_team_s_rules_and_its_streaming_answers_once(member, team):
    """The policy and provider come along with the team (or the conversation and its team),
    and the answers streaming are read once, under the lock that writes the rows."""
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=10)
    conversation = Conversation.objects.create(team=team, owner=member, model=KNOWN_MODELS[0])
    for request in [
        SendRequest(content="Hello", conversation_id=conversation.pk),
        SendRequest(content="Hello"),
    ]:
        with CaptureQueriesContext(connection) as queries:
            plan = replies.admit_send(member, None, request, "r1")
            exchange = replies.start_reply(plan)
        Message.objects.filter(pk=exchange.assistant_id).update(status=MessageStatus.COMPLETE)
        assert statements_reading("teams_teampolicy", queries) == 1
        assert statements_reading("teams_teamprovider", queries) == 1
        assert statements_reading("teams_team", queries) == 1
        streaming_checks = [
            q
            for q in queries.captured_queries
            if "'streaming'" in q["sql"] and "SELECT" in q["sql"]
        ]
        # A reply also asks whether its conversation is busy.
        assert len(streaming_checks) == (2 if request.conversation_id else 1)


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


class FailingToolbox:
    def available_tools(self, team_id: int) -> list:
        raise RuntimeError("the tool list cannot be read")

    async def needs_approval(self, tool) -> bool:
        raise AssertionError("nothing is called")

    async def call_tool(self, tool, arguments: dict, timeout: float):
        raise AssertionError("nothing is called")


def test_admission_lists_the_team_s_tools_in_the_same_trip(member, team, toolbox):
    plan = replies.admit_send(member, None, SendRequest(content="Hello"), "r1")
    assert [tool.name for tool in plan.tools] == [tool.name for tool in toolbox.tools]
    assert toolbox.teams_asked == [team.pk]


def test_a_conversation_without_tools_does_not_list_them(member, team, toolbox):
    request = SendRequest(content="Hello", tools=False)
    plan = replies.admit_send(member, None, request, "r1")
    assert plan.tools == ()
    assert toolbox.teams_asked == []


def test_an_answer_is_admitted_without_tools_when_they_cannot_be_listed(member, team, caplog):
    previous = tooling.use_toolbox(FailingToolbox())
    try:
        plan = replies.admit_send(member, None, SendRequest(content="Hello"), "r1")
    finally:
        tooling.use_toolbox(previous)
    assert plan.tools == ()
    assert plan.user_content == "Hello"
    assert f"Listing the tools of team {team.pk} failed" in caplog.text


def test_an_answer_reserves_the_prompt_it_sends_and_its_max_tokens(member, team):
    """The reservation is the trimmed history's estimate, the one trimming counted."""
    conversation = Conversation.objects.create(
        team=team, owner=member, model=KNOWN_MODELS[0], max_tokens=500
    )
    request = SendRequest(content="Hello " * 200, conversation_id=conversation.pk)
    plan = planning.plan_send(member, request, team=None)
    assert plan.prompt_tokens == count_message_tokens(plan.messages) > 200
    assert plan.reserved_tokens == plan.prompt_tokens + 500


def test_a_send_looks_up_the_flags_of_its_own_branch_only(member, team):
    """The blocked questions a send leaves out of its history are found by the branch's own
    messages, not by reading every blocked question of the site at each send."""
    conversation = Conversation.objects.create(team=team, owner=member, model=KNOWN_MODELS[0])
    blocked = Message.objects.create(conversation=conversation, role="user", content="A lock?")
    SafetyFlag.objects.create(team=team, message=blocked, stage="input", blocked=True)
    Message.objects.create(conversation=conversation, role="user", content="A llama?")
    request = SendRequest(content="An alpaca?", conversation_id=conversation.pk)
    with CaptureQueriesContext(connection) as queries:
        plan = planning.plan_send(member, request, team=None)
    sent = [message["content"] for message in plan.messages]
    assert "A llama?" in str(sent) and "A lock?" not in str(sent)
    [history] = [q["sql"] for q in queries.captured_queries if "teams_safetyflag" in q["sql"]]
    assert finds_rows_by(history, "message_id")


def test_the_answer_to_a_blocked_question_is_not_regenerated_from_an_earlier_one(member, team):
    """A question the safety policy blocked, after a question whose answer failed: the turn
    left to send is that earlier question, which another answer under the blocked one must
    not answer."""
    conversation = Conversation.objects.create(team=team, owner=member, model=KNOWN_MODELS[0])
    turns = [
        ("user", "What is a llama?", MessageStatus.COMPLETE, ""),
        ("assistant", "", MessageStatus.ERROR, "upstream_unavailable"),
        ("user", "How do I pick a lock?", MessageStatus.COMPLETE, ""),
        ("assistant", "", MessageStatus.ERROR, "safety_blocked"),
    ]
    rows = [
        Message.objects.create(
            conversation=conversation, role=role, content=text, status=status, error_code=code
        )
        for role, text, status, code in turns
    ]
    SafetyFlag.objects.create(team=team, message=rows[2], stage="input", blocked=True)
    with pytest.raises(ChatError) as refused:
        planning.plan_regenerate(member, RegenerateRequest(message_id=rows[3].pk))
    assert (refused.value.code, refused.value.field) == ("invalid_frame", "message_id")
