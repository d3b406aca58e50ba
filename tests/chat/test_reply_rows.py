"""An answer's own rows: what starting and ending one writes, and what it need not read again."""

import threading
from functools import partial

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatapp.chat.actions import conversations, replies
from chatapp.chat.errors import ChatError
from chatapp.chat.models import Conversation, Message, MessageStatus
from chatapp.chat.requests import RegenerateRequest, SendRequest
from chatapp.llm import Usage
from chatapp.teams.actions import delete_json_schema, delete_prompt
from chatapp.teams.models import BudgetNotice, JsonSchema, SystemPrompt, TeamPolicy, TeamUsage


def started(user, content="Hello", conversation_id=None):
    request = SendRequest(content=content, conversation_id=conversation_id)
    plan = replies.admit_send(user, None, request, "r1")
    return plan, replies.start_reply(plan)


def ended(plan, exchange, **fields) -> replies.ReplyResult:
    values = {
        "message_id": exchange.assistant_id,
        "conversation_id": exchange.conversation_id,
        "status": MessageStatus.COMPLETE,
        "content": "An answer.",
        "seq": 1,
        "model": plan.params.model,
        "usage": Usage(30, 20),
        "requested_format": plan.requested_format,
    }
    return replies.ReplyResult(**{**values, **fields})


def todays_usage_row(plan) -> TeamUsage:
    """The row an earlier answer of the day made: later ones add to it."""
    day = timezone.now().date()
    return TeamUsage.objects.create(
        team=plan.team, user=plan.user, model=plan.params.model, day=day
    )


def sibling_reads(queries) -> list[str]:
    siblings = 'SELECT "chat_message"."id" AS "id" FROM "chat_message" WHERE'
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(siblings)]


def test_a_new_conversation_s_first_messages_are_only_children_without_a_read(member, team):
    with CaptureQueriesContext(connection) as queries:
        _, exchange = started(member)
    assert exchange.created
    assert exchange.user_message is not None
    assert exchange.user_message["sibling_ids"] == [exchange.user_message["id"]]
    assert exchange.assistant_message["sibling_ids"] == [exchange.assistant_id]
    assert sibling_reads(queries) == []


def test_a_later_question_s_siblings_are_read(member, team):
    _, first = started(member)
    Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.COMPLETE)
    with CaptureQueriesContext(connection) as queries:
        _, later = started(member, "And then?", conversation_id=first.conversation_id)
    assert later.user_message is not None
    assert later.user_message["sibling_ids"] == [later.user_message["id"]]
    assert later.assistant_message["sibling_ids"] == [later.assistant_id]
    assert len(sibling_reads(queries)) == 1  # the question's; its answer is its only child


def test_the_end_of_an_answer_and_its_usage_are_one_transaction(member, team):
    plan, exchange = started(member)
    todays_usage_row(plan)
    with CaptureQueriesContext(connection) as queries:
        error, checked = replies.save_reply(ended(plan, exchange), team, member, plan.rules.policy)
    assert (error, checked) == (None, None)
    statements = [q["sql"] for q in queries.captured_queries]
    # The test runs in a transaction, so the answer's own is one savepoint.
    assert sum(s.startswith("SAVEPOINT") for s in statements) == 1
    assert not [s for s in statements if s.startswith("SELECT")]  # nothing read again
    answer = Message.objects.get(pk=exchange.assistant_id)
    assert (answer.status, answer.content, answer.completion_tokens) == (
        "complete",
        "An answer.",
        20,
    )
    usage = TeamUsage.objects.get(team=team, user=member)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (30, 20, 1)


def test_the_first_usage_of_the_day_is_written_inside_the_answer_s_transaction(member, team):
    plan, exchange = started(member)
    replies.save_reply(ended(plan, exchange), team, member, plan.rules.policy)
    usage = TeamUsage.objects.get(team=team, user=member)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (30, 20, 1)


def test_the_budget_is_checked_against_the_policy_the_answer_was_planned_with(member, team):
    TeamPolicy.objects.create(team=team, monthly_token_budget=60)
    plan, exchange = started(member)
    replies.save_reply(ended(plan, exchange), team, member, plan.rules.policy)
    assert list(BudgetNotice.objects.values_list("percent", flat=True)) == [80]


def test_an_answer_deleted_while_streaming_is_not_checked_but_its_tokens_count(member, team):
    """A conversation deleted mid-answer (another tab, a temporary chat left) stops the answer;
    the tokens it streamed were spent, and count against the budgets."""
    plan, exchange = started(member)
    Conversation.objects.filter(pk=exchange.conversation_id).delete()
    result = ended(plan, exchange, requested_format={"type": "json_object"}, content="{}")
    assert replies.save_reply(result, team, member, plan.rules.policy) == (None, None)
    usage = TeamUsage.objects.get(team=team, user=member)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (30, 20, 1)


@pytest.mark.parametrize("gone", ["team", "user"])
def test_an_answer_of_a_team_or_person_deleted_meanwhile_counts_nowhere(member, team, gone):
    plan, exchange = started(member)
    (team if gone == "team" else member).delete()
    assert replies.save_reply(ended(plan, exchange), team, member, plan.rules.policy) == (
        None,
        None,
    )
    assert not TeamUsage.objects.exists()


def test_a_title_and_its_tokens_are_one_transaction(member, team):
    plan, exchange = started(member, "How do I file taxes?")
    todays_usage_row(plan)
    with CaptureQueriesContext(connection) as queries:
        kept = conversations.keep_generated_title(
            exchange.conversation_id,
            exchange.title,
            "Filing Taxes",
            usage=(50, 4),
            team=team,
            user=member,
            model=plan.params.model,
            policy=plan.rules.policy,
        )
    assert kept
    statements = [q["sql"] for q in queries.captured_queries]
    assert sum(s.startswith("SAVEPOINT") for s in statements) == 1
    assert not [s for s in statements if s.startswith("SELECT")]
    assert Conversation.objects.get(pk=exchange.conversation_id).title == "Filing Taxes"
    assert TeamUsage.objects.get(team=team, user=member).completion_tokens == 4


def test_sends_planned_at_once_in_one_conversation_stream_one_answer(member, team):
    """Two server processes may plan sends to one conversation at the same moment: the one
    that writes second finds the first answer streaming and is refused, writing nothing."""
    _, first = started(member)
    Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.COMPLETE)
    request = SendRequest(content="Again", conversation_id=first.conversation_id)
    one = replies.admit_send(member, None, request, "r2")
    two = replies.admit_send(member, None, request, "r3")
    replies.start_reply(one)
    with pytest.raises(ChatError) as refused:
        replies.start_reply(two)
    assert refused.value.code == "conversation_busy"
    messages = Message.objects.filter(conversation_id=first.conversation_id)
    assert messages.count() == 4
    assert messages.filter(status=MessageStatus.STREAMING).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_send_starting_during_a_branch_switch_keeps_its_answer_shown(member, team, monkeypatch):
    """Two processes: one switches the branch shown while the other starts a send in the
    same conversation. The send waits for the switch, so its streaming answer ends up shown;
    the switch never sets the branch back under it."""
    if connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database refuses a second writer at once")
    _, first = started(member, "First")
    Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.COMPLETE)
    question_id = Message.objects.get(pk=first.assistant_id).parent_id
    newer = Message.objects.create(
        conversation_id=first.conversation_id,
        parent_id=question_id,
        role="assistant",
        status=MessageStatus.COMPLETE,
        content="Another version",
    )
    Conversation.objects.filter(pk=first.conversation_id).update(active_leaf=newer)
    request = SendRequest(content="Go on", conversation_id=first.conversation_id)
    send = replies.admit_send(member, None, request, "r2")  # below the newer version
    sent: dict[str, replies.Exchange] = {}

    def start_the_send() -> None:
        try:
            sent["exchange"] = replies.start_reply(send)
        finally:
            connection.close()

    other_process = threading.Thread(target=start_the_send)
    branch = conversations.tree.conversation_branch

    def branch_as_a_send_starts(*args):
        if not other_process.is_alive() and "exchange" not in sent:
            other_process.start()
            other_process.join(1)  # it waits for the switch, as long as the switch holds it
        return branch(*args)

    monkeypatch.setattr(conversations.tree, "conversation_branch", branch_as_a_send_starts)
    conversations.switch_branch(member, first.assistant_id)
    other_process.join(30)
    answer_id = sent["exchange"].assistant_id
    assert Conversation.objects.get(pk=first.conversation_id).active_leaf_id == answer_id
    assert Message.objects.get(pk=answer_id).status == MessageStatus.STREAMING


def test_an_answer_planned_before_its_conversation_was_deleted_is_refused(member, team):
    """Another tab deletes the conversation while a regenerate is planned: the answer is
    refused as for any conversation that is not there, and nothing is written."""
    _, first = started(member)
    Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.COMPLETE)
    plan = replies.admit_regenerate(member, RegenerateRequest(message_id=first.assistant_id), "r2")
    conversations.delete_conversation(Conversation.objects.get(pk=first.conversation_id))
    with pytest.raises(ChatError) as refused:
        replies.start_reply(plan)
    assert (refused.value.code, refused.value.field) == ("not_found", "conversation_id")
    assert not Message.objects.filter(conversation_id=first.conversation_id).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_conversation_while_an_answer_s_rows_are_written_stops_that_answer(member, team):
    """Two processes: one writes a regenerated answer's rows while the other deletes the
    conversation. The deletion waits for the rows, then deletes them too and names the new
    answer among those to stop, rather than fail on rows it did not see."""
    if connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database refuses a second writer at once")
    _, first = started(member)
    Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.COMPLETE)
    plan = replies.admit_regenerate(member, RegenerateRequest(message_id=first.assistant_id), "r2")
    outcome: dict[str, object] = {}

    def delete() -> None:
        conversation = Conversation.objects.get(pk=first.conversation_id)
        try:
            outcome["streaming"] = conversations.delete_conversation(conversation)
        except Exception as error:
            outcome["streaming"] = repr(error)
        finally:
            connection.close()

    exchange = rows_written_while(plan, delete)
    assert outcome["streaming"] == [exchange.assistant_id]
    assert not Conversation.objects.filter(pk=first.conversation_id).exists()
    assert not Message.objects.filter(conversation_id=first.conversation_id).exists()


def test_sends_planned_at_once_by_two_people_share_the_teams_budget(member, owner, team):
    """Two people's sends planned at the same moment (two processes) both pass planning; the
    one that starts second counts what the first may spend, and is refused."""
    TeamPolicy.objects.create(team=team, monthly_token_budget=500)
    one = replies.admit_send(member, None, SendRequest(content="First"), "r1")
    two = replies.admit_send(owner, None, SendRequest(content="Second"), "r2")
    first = replies.start_reply(one)
    assert Message.objects.get(pk=first.assistant_id).reserved_tokens == one.reserved_tokens
    with pytest.raises(ChatError) as refused:
        replies.start_reply(two)
    assert refused.value.code == "quota_exceeded"
    assert f"up to {one.reserved_tokens:,} held" in refused.value.message
    assert Message.objects.filter(status=MessageStatus.STREAMING).count() == 1
    replies.save_reply(ended(one, first, usage=Usage(30, 20)), team, member)
    replies.start_reply(two)  # now only what the first really used counts: 50 of 500


@pytest.mark.django_db(transaction=True)
def test_a_send_starting_while_another_is_admitted_waits_for_its_row(member, owner, team):
    """Two people start at once in two processes: the second's admission waits on the team's
    row until the first has written its streaming answer, then counts it and is refused."""
    if connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database refuses a second writer at once")
    TeamPolicy.objects.create(team=team, monthly_token_budget=500)
    one = replies.admit_send(member, None, SendRequest(content="First"), "r1")
    two = replies.admit_send(owner, None, SendRequest(content="Second"), "r2")
    admitted, go_on = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def hold_on(plan) -> None:  # admitted, its row not written yet
        admitted.set()
        assert go_on.wait(30)

    def start(name, plan, admitted=None) -> None:
        try:
            outcome[name] = replies.start_reply(plan, admitted)
        except ChatError as error:
            outcome[name] = error.code
        finally:
            connection.close()

    race(partial(start, "first", one, hold_on), admitted, go_on, partial(start, "second", two))
    assert outcome["second"] == "quota_exceeded"
    assert isinstance(outcome["first"], replies.Exchange)


def race(first, holding: threading.Event, go_on: threading.Event, second) -> None:
    """Two processes: `first` runs in a thread until it sets `holding` (its locks taken), then
    `second` in another until it waits on one of them (or ends); then `first` goes on."""
    one, two = threading.Thread(target=first), threading.Thread(target=second)
    one.start()
    assert holding.wait(30)
    two.start()
    for _ in range(3000):  # a ceiling for a busy machine: until it waits on a lock, or ended
        if not two.is_alive() or waiting_on_a_lock():
            break
        threading.Event().wait(0.01)
    go_on.set()
    one.join(30)
    two.join(30)


def rows_written_while(plan, other) -> replies.Exchange:
    """The plan's rows written in one process, its transaction held open until `other` waits
    on one of its locks in another (or ends), then committed: the exchange written."""
    written, go_on = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def write_the_rows() -> None:
        try:
            with transaction.atomic():  # committed only once `other` has started
                outcome["exchange"] = replies.start_reply(plan)
                written.set()
                assert go_on.wait(30)
        finally:
            connection.close()

    race(write_the_rows, written, go_on, other)
    exchange = outcome["exchange"]
    assert isinstance(exchange, replies.Exchange)
    return exchange


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_a_json_answer_with_a_number_too_long_to_read_is_saved_and_marked_invalid(member, team):
    """docs/json-output.md: when an answer asked for JSON ends, the server parses it and says
    plainly when it does not parse; an integer past Python's 4,300 digits must not stop the
    answer's final write (its status, its text, its usage)."""
    plan, exchange = started(member)
    text = '{"digits": ' + "7" * 5000 + "}"
    result = ended(plan, exchange, content=text, requested_format={"type": "json_object"})
    error, checked = replies.save_reply(result, team, member, plan.rules.policy)
    assert error is None
    assert checked is not None and checked["valid"] is False
    assert "too long" in checked["error"]
    answer = Message.objects.get(pk=exchange.assistant_id)
    assert (answer.status, answer.format) == ("complete", checked)
    assert TeamUsage.objects.get(team=team, user=member).completion_tokens == 20


@pytest.mark.django_db(transaction=True)
def test_a_send_below_an_answer_a_retry_replaced_meanwhile_is_not_found(member, team):
    """Tab B plans a question below an answer that failed before any text; tab A retries that
    answer, whose empty version goes, and its new answer ends before B writes: B's question
    would follow a message that is gone."""
    _, first = started(member)
    Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.ERROR)
    request = SendRequest(content="Go on", conversation_id=first.conversation_id)
    below = replies.admit_send(member, None, request, "r2")  # below the failed answer
    retry = replies.admit_regenerate(member, RegenerateRequest(first.assistant_id), "r3")
    retried = replies.start_reply(retry)
    Message.objects.filter(pk=retried.assistant_id).update(status=MessageStatus.COMPLETE)
    assert not Message.objects.filter(pk=first.assistant_id).exists()
    with pytest.raises(ChatError) as refused:
        replies.start_reply(below)
    assert refused.value.code == "not_found" and "retried meanwhile" in refused.value.message
    assert not Message.objects.filter(content="Go on").exists()


@pytest.mark.django_db(transaction=True)  # the prompt's foreign key is checked at commit
@pytest.mark.parametrize("conversation", ["new", "switched"])
def test_a_send_naming_a_prompt_deleted_meanwhile_is_refused(member, owner, team, conversation):
    """An admin deletes the team's prompt after a send naming it was planned (its page still
    listed it): the send is refused as for a prompt that is not there, and nothing is written."""
    prompt = SystemPrompt.objects.create(team=team, name="Terse", content="You are terse.")
    conversation_id = None
    if conversation == "switched":
        _, first = started(member)
        Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.COMPLETE)
        conversation_id = first.conversation_id
    request = SendRequest(
        content="Be brief", conversation_id=conversation_id, system_prompt_id=prompt.pk
    )
    plan = replies.admit_send(member, None, request, "r2")
    delete_prompt(owner, prompt)
    with pytest.raises(ChatError) as refused:
        replies.start_reply(plan)
    assert (refused.value.code, refused.value.field) == ("not_found", "system_prompt_id")
    assert "deleted meanwhile" in refused.value.message
    assert not Message.objects.filter(content="Be brief").exists()
    if conversation_id is not None:
        assert Conversation.objects.get(pk=conversation_id).system_prompt_id is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("named", ["prompt", "schema"])
def test_deleting_a_prompt_or_schema_while_a_send_names_it_unlinks_that_send_too(
    member, owner, team, named
):
    """Two processes: one writes the rows of a new chat started from the team's prompt (or
    asking for its JSON schema) while an admin deletes it. The deletion waits for the rows,
    then unlinks the new chat from it too, rather than fail on a chat it did not see."""
    if connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database refuses a second writer at once")
    if named == "prompt":
        target = SystemPrompt.objects.create(team=team, name="Terse", content="You are terse.")
        request = SendRequest(content="Be brief", system_prompt_id=target.pk)
    else:
        target = JsonSchema.objects.create(team=team, name="ticket", schema={"type": "object"})
        request = SendRequest(content="Be brief", response_format=("json_schema", target.pk))
    plan = replies.admit_send(member, None, request, "r1")
    outcome: dict[str, object] = {}

    def delete() -> None:
        try:
            if named == "prompt":
                delete_prompt(owner, SystemPrompt.objects.get(pk=target.pk))
            else:
                delete_json_schema(owner, JsonSchema.objects.get(pk=target.pk))
            outcome["deleted"] = True
        except Exception as error:  # the team's page would answer 500
            outcome["deleted"] = repr(error)
        finally:
            connection.close()

    exchange = rows_written_while(plan, delete)
    assert outcome["deleted"] is True
    assert not type(target).objects.filter(pk=target.pk).exists()
    chat = Conversation.objects.get(pk=exchange.conversation_id)
    assert (chat.system_prompt_id, chat.json_schema_id) == (None, None)


@pytest.mark.django_db(transaction=True)  # the schema's foreign key is checked at commit
def test_a_send_asking_for_a_schema_deleted_meanwhile_is_refused(member, owner, team):
    """An admin deletes the team's JSON schema after a send asking its answer to keep to it
    was planned: the send is refused as for a schema that is not there, and nothing is
    written."""
    schema = JsonSchema.objects.create(team=team, name="ticket", schema={"type": "object"})
    _, first = started(member)
    Message.objects.filter(pk=first.assistant_id).update(status=MessageStatus.COMPLETE)
    request = SendRequest(
        content="As a ticket",
        conversation_id=first.conversation_id,
        response_format=("json_schema", schema.pk),
    )
    plan = replies.admit_send(member, None, request, "r2")
    delete_json_schema(owner, schema)
    with pytest.raises(ChatError) as refused:
        replies.start_reply(plan)
    assert (refused.value.code, refused.value.field) == ("not_found", "response_format")
    assert "deleted meanwhile" in refused.value.message
    assert not Message.objects.filter(content="As a ticket").exists()
