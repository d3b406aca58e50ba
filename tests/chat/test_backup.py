"""export_conversations / import_conversations: lossless, idempotent, all-or-nothing."""

import io
import itertools
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatapp.chat import backup, json_stream, planning, reaper, tree
from chatapp.chat.backup import CONVERSATION_LINKS, MESSAGE_LINKS, data_fields
from chatapp.chat.models import Conversation, Message
from chatapp.chat.requests import SendRequest
from chatapp.llm import KNOWN_MODELS
from chatapp.teams.actions import ensure_personal_team, flag_message, review_flag
from chatapp.teams.audit_trail import check_whole_chain
from chatapp.teams.models import (
    AuditEvent,
    Membership,
    Role,
    SafetyFlag,
    SystemPrompt,
    Team,
    TeamMonthUsage,
    TeamUsage,
)
from chatapp.teams.safety import Finding

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def make_conversation(team, owner, title: str, start: datetime, prompt=None) -> Conversation:
    """A conversation whose every stored field holds a distinctive value."""
    convo = Conversation.objects.create(
        team=team,
        owner=owner,
        title=title,
        system_prompt=prompt,
        system_prompt_text="You are terse. — «ünïcødé» 🦙",
        system_prompt_locked=True,
        model="Llama-3.3-70B-Instruct",
        temperature=0.35,
        max_tokens=777,
        top_p=0.85,
        tools_enabled=False,
    )
    Message.objects.create(conversation=convo, role="system", content="You are terse.")
    Message.objects.create(conversation=convo, role="user", content=f"{title}: what is 2+2?")
    Message.objects.create(
        conversation=convo,
        role="assistant",
        content="**4**\n\n```py\nprint(2 + 2)\n```",
        status="complete",
        seq=9,
        model="Llama-3.3-70B-Instruct",
        finish_reason="stop",
        prompt_tokens=31,
        completion_tokens=9,
        time_to_first_token_ms=180,
        duration_ms=950,
        upstream_request_id="req-upstream-1",
        tool_calls=[
            {
                "id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Zürich"}',
                "status": "done",
                "content": "Sunny <b>not html</b>",
                "is_error": False,
                "elapsed": 0.25,
                "round": 1,
                "offset": 0,
            }
        ],
    )
    Message.objects.create(
        conversation=convo,
        role="assistant",
        content="partial answ",
        status="error",
        seq=2,
        model="Llama-3.3-70B-Instruct",
        error_code="rate_limited",
        error_message="The Llama API rate limit was reached.",
        heartbeat_at=start + timedelta(seconds=3),
    )
    # Creation stamps "now"; spread the timestamps so ordering and precision are exercised.
    for offset, message in enumerate(convo.messages.all()):
        Message.objects.filter(pk=message.pk).update(
            created_at=start + timedelta(seconds=offset, microseconds=offset),
            updated_at=start + timedelta(seconds=offset + 1, microseconds=7),
        )
    Conversation.objects.filter(pk=convo.pk).update(
        created_at=start, updated_at=start + timedelta(minutes=5)
    )
    return convo


def snapshot(conversations) -> list[dict]:
    """Every stored field of the conversations and their messages, by value and reference."""
    rows = []
    for convo in conversations.order_by("created_at").prefetch_related("messages"):
        fields = data_fields(Conversation, CONVERSATION_LINKS)
        row = {f.name: f.value_from_object(convo) for f in fields}
        messages = list(convo.messages.all())
        # The tree by position in the list: ids differ after an import.
        position = {m.pk: index for index, m in enumerate(messages)}
        row.update(
            team=(convo.team.name, convo.team.personal_owner_id is not None),
            owner=convo.owner.username,
            system_prompt=convo.system_prompt_id,
            active_leaf=position.get(convo.active_leaf_id),
            messages=[
                {
                    **{f.name: f.value_from_object(m) for f in data_fields(Message, MESSAGE_LINKS)},
                    "parent": position.get(m.parent_id),
                }
                for m in messages
            ],
        )
        rows.append(row)
    return rows


def export(*args) -> dict:
    out = io.StringIO()
    call_command("export_conversations", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def import_file(tmp_path, data, *args) -> str:
    path = tmp_path / "import.json"
    path.write_text(json.dumps(data))
    out = io.StringIO()
    call_command("import_conversations", str(path), *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def prompt(team):
    return SystemPrompt.objects.create(team=team, name="Terse", content="You are terse.")


@pytest.fixture
def history(team, owner, member, prompt):
    """Olivia: two conversations in Acme and one in her personal team; Max: one in Acme."""
    personal = ensure_personal_team(owner)
    return {
        "olivia_acme_1": make_conversation(team, owner, "first", T0, prompt),
        "olivia_acme_2": make_conversation(team, owner, "second", T0 + timedelta(hours=1)),
        "olivia_personal": make_conversation(personal, owner, "mine", T0 + timedelta(hours=2)),
        "max_acme": make_conversation(team, member, "max's", T0 + timedelta(hours=3)),
    }


def without_export_time(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "exported_at"}


def test_the_export_carries_every_stored_field():
    """A field added to the models later is exported by value or fails here until handled."""
    for model, links in ((Conversation, CONVERSATION_LINKS), (Message, MESSAGE_LINKS)):
        for f in data_fields(model, links):
            assert not f.is_relation, f"{model.__name__}.{f.name} needs a reference in the export"
        assert {f.name for f in model._meta.concrete_fields} <= {
            *(f.name for f in data_fields(model, links)),
            *links,
        }


def test_a_user_round_trip_restores_every_field(tmp_path, history, owner):
    mine = Conversation.objects.filter(owner=owner)
    before = snapshot(mine)
    data = export("--user", "olivia")
    assert len(data["conversations"]) == 3
    mine.delete()

    output = import_file(tmp_path, data)

    assert "Imported 3 conversations (12 messages, 0 files); skipped 0" in output
    assert snapshot(Conversation.objects.filter(owner=owner)) == before
    assert without_export_time(export("--user", "olivia")) == without_export_time(data)


def add_version(convo: Conversation, of: Message, content: str) -> Message:
    """Another version of a message, beside it, answered."""
    version = Message(conversation=convo, parent_id=of.parent_id, role=of.role, content=content)
    version.explicit_parent = True
    version.save()
    Message.objects.create(conversation=convo, role="assistant", content=f"On {content}")
    return version


def test_a_round_trip_keeps_the_tree_and_the_branch_shown(tmp_path, history, owner):
    convo = history["olivia_acme_1"]
    question = convo.messages.get(role="user")
    add_version(convo, question, "what is 3+3?")
    add_version(convo, question, "what is 4+4?")
    first_answer = convo.messages.filter(parent=question).first()
    Conversation.objects.filter(pk=convo.pk).update(active_leaf=first_answer)
    mine = Conversation.objects.filter(owner=owner)
    before = snapshot(mine)
    assert before[0]["active_leaf"] == 2
    assert [m["parent"] for m in before[0]["messages"]] == [None, 0, 1, 2, 0, 4, 0, 6]
    data = export("--user", "olivia")
    mine.delete()

    import_file(tmp_path, data)

    assert snapshot(Conversation.objects.filter(owner=owner)) == before
    restored = Conversation.objects.get(owner=owner, title="first")
    shown = tree.conversation_branch(restored.pk, restored.active_leaf_id).path
    contents = list(Message.objects.filter(pk__in=shown).values_list("content", flat=True))
    assert contents[1] == "first: what is 2+2?"
    assert without_export_time(export("--user", "olivia")) == without_export_time(data)


def test_a_round_trip_a_conversation_and_a_few_characters_at_a_time(tmp_path, history, monkeypatch):
    """Batches of one (two conversations begun in the same microsecond among them) written,
    and the file read back 7 characters at a time: the same data, the same file."""
    monkeypatch.setattr(backup, "BATCH", 1)
    monkeypatch.setattr(json_stream, "CHUNK", 7)
    Conversation.objects.filter(title="max's").update(created_at=T0)  # "first"'s time
    convo = history["olivia_acme_1"]
    add_version(convo, convo.messages.get(role="user"), "what is 3+3?")

    def by_title() -> list[dict]:  # two begun at once: their order is the database's choice
        return sorted(snapshot(Conversation.objects.all()), key=lambda row: row["title"])

    before = by_title()
    data = export("--all")
    assert len(data["conversations"]) == 4
    Conversation.objects.all().delete()

    output = import_file(tmp_path, data)

    assert "Imported 4 conversations (18 messages, 0 files)" in output
    assert by_title() == before
    assert without_export_time(export("--all")) == without_export_time(data)


def test_an_older_file_without_the_tree_imports_as_straight_branches(tmp_path, history, owner):
    data = export("--user", "olivia")
    for conversation in data["conversations"]:
        conversation.pop("active_leaf")
        for message in conversation["messages"]:
            message.pop("parent")
    before = snapshot(Conversation.objects.filter(owner=owner))
    Conversation.objects.filter(owner=owner).delete()

    import_file(tmp_path, data)

    assert snapshot(Conversation.objects.filter(owner=owner)) == before


def test_a_team_round_trip_into_an_installation_without_the_team(tmp_path, history, team):
    before = snapshot(Conversation.objects.filter(team=team))
    data = export("--team", str(team.pk))
    assert {c["title"] for c in data["conversations"]} == {"first", "second", "max's"}
    team.delete()
    get_user_model().objects.filter(username="max").delete()

    with pytest.raises(CommandError, match="max"):
        import_file(tmp_path, data)
    output = import_file(tmp_path, data, "--create-missing")

    assert "Created users (no password yet): max" in output
    assert "Created teams: Acme" in output
    restored = Team.objects.get(name="Acme")
    roles = dict(restored.memberships.values_list("user__username", "role"))
    assert roles == {"olivia": Role.OWNER, "max": Role.MEMBER}
    assert not get_user_model().objects.get(username="max").has_usable_password()
    after = snapshot(Conversation.objects.filter(team=restored))
    # The prompt was deleted with the team: the conversation keeps its snapshot, not the link.
    for row in before:
        row["system_prompt"] = None
    assert after == before


def test_users_teams_and_members_an_import_creates_are_in_the_audit_trail(tmp_path, history, team):
    """As when made in the admin site or by a sign-in: a team that appears with its owners
    shows who made it and how, and the chain still verifies."""
    data = export("--team", str(team.pk))
    team.delete()
    get_user_model().objects.filter(username="max").delete()
    AuditEvent.objects.all().delete()

    import_file(tmp_path, data, "--dry-run", "--create-missing")
    assert not AuditEvent.objects.exists()
    import_file(tmp_path, data, "--create-missing")

    restored = Team.objects.get(name="Acme")
    events = {
        (e.action, e.team_id, e.details.get("user"), e.details.get("role"))
        for e in AuditEvent.objects.all()
    }
    assert events == {
        ("user.create", None, "max", None),
        ("team.create", restored.pk, None, None),
        ("member.add", restored.pk, "olivia", Role.OWNER),
        ("member.add", restored.pk, "max", Role.MEMBER),
    }
    assert {e.details["source"] for e in AuditEvent.objects.all()} == {"import"}
    assert check_whole_chain()[1] is None
    import_file(tmp_path, data, "--create-missing")  # present now: nothing more recorded
    assert AuditEvent.objects.count() == 4


def test_importing_twice_changes_nothing(tmp_path, history):
    data = export("--all")
    counts = (Conversation.objects.count(), Message.objects.count())

    output = import_file(tmp_path, data)

    assert "Imported 0 conversations (0 messages, 0 files); skipped 4 already present." in output
    assert (Conversation.objects.count(), Message.objects.count()) == counts


@pytest.mark.parametrize("second_title", ["other", "first"])
def test_conversations_started_in_the_same_microsecond_import_as_two(
    tmp_path, team, owner, second_title
):
    """One person, two conversations created at the same instant (different questions, or
    even the same): both come back, once each however often the file is imported, and one
    restored beside the other present already is not taken for it."""
    make_conversation(team, owner, "first", T0)
    make_conversation(team, owner, second_title, T0)

    def both() -> list[dict]:  # in the order of their contents: their creation time is one
        return sorted(snapshot(Conversation.objects.all()), key=repr)

    before = both()
    data = export("--all")
    Conversation.objects.all().delete()

    output = import_file(tmp_path, data)

    assert "Imported 2 conversations (8 messages, 0 files); skipped 0" in output
    assert both() == before
    output = import_file(tmp_path, data)
    assert "Imported 0 conversations (0 messages, 0 files); skipped 2" in output
    Conversation.objects.filter(pk=Conversation.objects.order_by("pk").first().pk).delete()
    output = import_file(tmp_path, data)
    assert "Imported 1 conversation (4 messages, 0 files); skipped 1" in output
    assert both() == before


def test_a_conversation_continued_since_the_export_is_still_the_one_present(tmp_path, team, owner):
    """Re-importing an older backup: the conversation has a new turn since, and an answer
    that was streaming at the export has more text now. It is skipped, not imported again."""
    convo = make_conversation(team, owner, "first", T0)
    data = export("--all")
    last = convo.messages.order_by("pk").last()
    Message.objects.filter(pk=last.pk).update(content="partial answer, finished later")
    question = Message.objects.create(conversation=convo, role="user", content="And 3+3?")
    Message.objects.create(conversation=convo, role="assistant", parent=question, content="6")
    counts = (Conversation.objects.count(), Message.objects.count())

    output = import_file(tmp_path, data)

    assert "Imported 0 conversations (0 messages, 0 files); skipped 1" in output
    assert (Conversation.objects.count(), Message.objects.count()) == counts


def test_missing_users_are_refused_and_nothing_changes(tmp_path, history, owner):
    data = export("--all")
    Conversation.objects.filter(owner=owner).delete()
    data["users"].append({"username": "ghost", "email": ""})
    data["conversations"][0]["owner"] = "ghost"
    counts = (Conversation.objects.count(), Message.objects.count())

    with pytest.raises(CommandError, match="No such users here: ghost.*--create-missing"):
        import_file(tmp_path, data)
    assert (Conversation.objects.count(), Message.objects.count()) == counts
    assert not get_user_model().objects.filter(username="ghost").exists()


def renamed(data: dict, old: str, new: str) -> dict:
    """The document with a username changed wherever it names the user."""
    return json.loads(json.dumps(data).replace(f'"{old}"', f'"{new}"'))


def test_a_name_in_another_letter_case_is_the_account_of_that_name(tmp_path, history, member):
    """The site knows one account by a name in any letter case (signup and the admin site
    refuse "Max" beside "max"): an import does not make a second one."""
    data = renamed(export("--user", "max"), "max", "Max")
    Conversation.objects.filter(owner=member).delete()

    output = import_file(tmp_path, data, "--create-missing")

    assert "Imported 1 conversation" in output and "Created users" not in output
    assert not get_user_model().objects.filter(username="Max").exists()
    assert Conversation.objects.filter(owner=member).count() == 1


def test_a_name_in_another_unicode_form_is_the_account_of_that_name(tmp_path, history, member):
    """Account names are stored in their NFKC form (full-width "ｍａｘ" is "max"), as a
    company sign-in of an earlier release may have left one in an export: it finds that
    account, as a letter case does, rather than stopping on the unique username."""
    data = renamed(export("--user", "max"), "max", "\uff4d\uff41\uff58")
    Conversation.objects.filter(owner=member).delete()

    output = import_file(tmp_path, data, "--create-missing")

    assert "Imported 1 conversation" in output and "Created users" not in output
    assert Conversation.objects.filter(owner=member).count() == 1


def test_a_name_several_accounts_hold_in_other_letter_cases_is_refused(tmp_path, history, member):
    """Accounts made before names were compared in any letter case may be "Max" and "MAX":
    a file naming "mAx" does not pick one of them."""
    get_user_model().objects.create_user(username="MAX", password=None)
    data = renamed(export("--user", "max"), "max", "mAx")
    member.username = "Max"
    member.save(update_fields=["username"])
    counts = (Conversation.objects.count(), get_user_model().objects.count())

    with pytest.raises(CommandError, match="Several accounts here are named 'mAx'"):
        import_file(tmp_path, data, "--create-missing")
    assert (Conversation.objects.count(), get_user_model().objects.count()) == counts


def test_the_account_of_the_stored_name_wins_over_its_letter_cases(tmp_path, history, member):
    """Full-width "ｍａｘ" is stored as "max": with "max" here beside an older "MAX", it is
    "max"'s, as signup would have stored it, not a choice between the two."""
    get_user_model().objects.create_user(username="MAX", password=None)
    data = renamed(export("--user", "max"), "max", "\uff4d\uff41\uff58")
    Conversation.objects.filter(owner=member).delete()

    output = import_file(tmp_path, data, "--create-missing")

    assert "Imported 1 conversation" in output and "Created users" not in output
    assert Conversation.objects.filter(owner=member).count() == 1


def test_a_new_account_takes_the_nfkc_form_of_its_name(tmp_path, history, member):
    """A half-width "ﾔﾏﾀﾞ" is created as "ヤマダ", as every way of naming an account stores it,
    and owns its conversations."""
    data = renamed(export("--user", "max"), "max", "\uff94\uff8f\uff80\uff9e")
    data["users"][0]["email"] = "yamada@example.com"

    output = import_file(tmp_path, data, "--create-missing")

    assert "Created users (no password yet): \u30e4\u30de\u30c0" in output
    created = get_user_model().objects.get(username="\u30e4\u30de\u30c0")
    assert Conversation.objects.filter(owner=created).count() == 1


def test_two_names_of_one_new_account_are_refused(tmp_path, history, member):
    data = renamed(export("--user", "max"), "max", "maxine")
    data["users"][0]["email"] = ""
    data["users"].append({"username": "\uff4d\uff41\uff58\uff49\uff4e\uff45", "email": ""})
    counts = (Conversation.objects.count(), get_user_model().objects.count())

    with pytest.raises(CommandError, match="'maxine' and .* are one name here"):
        import_file(tmp_path, data, "--create-missing")
    assert (Conversation.objects.count(), get_user_model().objects.count()) == counts


def test_two_new_names_in_two_letter_cases_are_refused(tmp_path, history, member):
    """Signup and the admin site refuse "Maxine" beside "maxine": an import does not make
    both either."""
    data = renamed(export("--user", "max"), "max", "maxine")
    data["users"][0]["email"] = ""
    data["users"].append({"username": "Maxine", "email": ""})
    counts = (Conversation.objects.count(), get_user_model().objects.count())

    with pytest.raises(CommandError, match="'maxine' and .* are one name here"):
        import_file(tmp_path, data, "--create-missing")
    assert (Conversation.objects.count(), get_user_model().objects.count()) == counts


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("username", "m" * 151, "the username is longer than 150 characters"),
        ("email", "m" * 250 + "@example.com", "the email is longer than 254 characters"),
        ("first_name", 5, "the first_name is not text"),
        ("last_name", ["Max"], "the last_name is not text"),
    ],
)
def test_a_user_an_account_cannot_hold_is_refused(tmp_path, history, field, value, message):
    data = renamed(export("--user", "max"), "max", "maxine")
    data["users"][0].update({"email": "", field: value})
    if field == "username":
        data = renamed(data, "maxine", value)
    counts = (Conversation.objects.count(), get_user_model().objects.count())

    with pytest.raises(CommandError, match=message):
        import_file(tmp_path, data, "--create-missing")
    assert (Conversation.objects.count(), get_user_model().objects.count()) == counts


def test_a_new_account_with_another_accounts_address_is_refused(tmp_path, history, member):
    """Company sign-in finds an account by its address: two accounts must not share one."""
    data = renamed(export("--user", "max"), "max", "maxine")
    assert data["users"][0]["email"] == "max@example.com"
    data["users"][0]["email"] = "MAX@example.com"
    counts = (Conversation.objects.count(), get_user_model().objects.count())

    with pytest.raises(CommandError, match="'maxine': the email MAX@example.com is another acc"):
        import_file(tmp_path, data, "--create-missing")
    assert (Conversation.objects.count(), get_user_model().objects.count()) == counts


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.update(format="something-else"), "not a conversations export"),
        (lambda d: d.update(version=99), "version 99 is not supported"),
        (lambda d: d.update(conversations={}), "no 'conversations' list"),
        (lambda d: d["conversations"][-1]["messages"][1].update(role="robot"), "message 2: role"),
        (lambda d: d["conversations"][-1].update(temperature="hot"), "temperature"),
        (lambda d: d["conversations"][-1].pop("created_at"), "created_at is missing"),
        (lambda d: d["conversations"][-1].update(team=12345), "team is not in the export"),
        (lambda d: d["conversations"][-1].update(owner="nobody"), "user 'nobody'"),
        (lambda d: d["conversations"][-1].update(messages="hi"), "messages must be a list"),
        (lambda d: d["conversations"][-1]["messages"][1].update(parent=1), "an earlier message"),
        (lambda d: d["conversations"][-1]["messages"][1].update(parent="0"), "an earlier message"),
        (lambda d: d["conversations"][-1].update(active_leaf=99), "active_leaf must be one"),
        (lambda d: d["conversations"][-1].update(team=[1]), "team is not in the export"),
        (lambda d: d["teams"][0].update(key={}), "key must be a number"),
        (lambda d: d["conversations"][-1].update(owner=["olivia"]), "names the user"),
        (lambda d: d["conversations"][-1].update(created_at=5), "created_at: 5 is not a valid"),
        (lambda d: d["conversations"][-1].update(title="a\x00b"), "title holds a NUL"),
        (lambda d: d["conversations"][-1]["messages"][2].update(tool_calls="x"), "tool_calls"),
        (
            lambda d: d["conversations"][-1]["messages"][2]["tool_calls"][0].pop("name"),
            "tool_calls.0.name",
        ),
        (lambda d: d["conversations"][-1]["messages"][2].update(safety=[]), "safety"),
        (lambda d: d["conversations"][-1].update(title="a\ud800"), "title holds a lone surr"),
        (
            lambda d: d["conversations"][-1]["messages"][2]["tool_calls"][0].update(
                content="\ud800"
            ),
            "tool_calls holds a lone surrogate",
        ),
        (lambda d: d["users"][0].update(username="a\x00"), "in 'users' holds a NUL"),
    ],
)
def test_a_damaged_file_is_refused_whole(tmp_path, history, damage, message):
    data = export("--all")
    Conversation.objects.all().delete()
    damage(data)

    with pytest.raises(CommandError, match=message):
        import_file(tmp_path, data)
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


class QueryNotingStream(io.StringIO):
    """Output that notes, with each piece written, how many queries had run by then."""

    def __init__(self, queries: CaptureQueriesContext) -> None:
        super().__init__()
        self.queries = queries
        self.pieces: list[tuple[int, str]] = []

    def write(self, text: str) -> int:
        self.pieces.append((len(self.queries.captured_queries), text))
        return super().write(text)


def test_the_export_is_written_a_batch_at_a_time(history, monkeypatch):
    """A year of a team's conversations is not held in memory: each batch is written before
    the next is read, with the same few queries for each batch."""
    monkeypatch.setattr(backup, "BATCH", 1)
    with CaptureQueriesContext(connection) as queries:
        out = QueryNotingStream(queries)
        call_command("export_conversations", "--all", stdout=out, stderr=io.StringIO())

    def queries_run_when_written(title: str) -> int:
        return next(count for count, text in out.pieces if f'"title": "{title}"' in text)

    counts = [queries_run_when_written(t) for t in ("first", "second", "mine", "max's")]
    assert [later - earlier for earlier, later in itertools.pairwise(counts)] == [4, 4, 4]
    assert len(json.loads(out.getvalue())["conversations"]) == 4


@pytest.mark.parametrize("scope", ["--all", "--user", "--team"])
def test_the_file_is_what_json_dumps_writes(history, owner, scope):
    """Written piece by piece, the file is byte for byte the indented document it always was
    (with conversations, or none: a new user's, a new team's)."""
    newcomer = get_user_model().objects.create_user("nobody-yet")
    empty = Team.objects.create(name="Empty")
    Membership.objects.create(team=empty, user=owner, role=Role.OWNER)
    chosen = {"--all": [], "--user": [newcomer.username], "--team": [str(empty.pk)]}[scope]
    out = io.StringIO()
    call_command("export_conversations", scope, *chosen, stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=1) + "\n"
    if scope == "--team":
        assert json.loads(text)["teams"] == [
            {
                "key": empty.pk,
                "name": "Empty",
                "personal_owner": None,
                "members": [{"username": "olivia", "role": "owner"}],
            }
        ]
        assert [user["username"] for user in json.loads(text)["users"]] == ["olivia"]


class QueryNotingInput(io.StringIO):
    """Input that notes how far it had been read by the time each query ran."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.read_by_query: list[tuple[int, str]] = []

    def isatty(self) -> bool:
        return False


def test_the_import_reads_conversations_as_it_imports_them(history, owner, monkeypatch):
    """A year of a team's conversations is not read into memory at once: the first ones are
    saved before the file has been read to its end."""
    Message.objects.filter(role="user").update(content="A long question. " * 10_000)
    out = io.StringIO()
    call_command("export_conversations", "--user", "olivia", stdout=out, stderr=io.StringIO())
    Conversation.objects.filter(owner=owner).delete()
    stdin = QueryNotingInput(out.getvalue())
    monkeypatch.setattr("sys.stdin", stdin)

    def note(execute, sql, params, many, context):
        stdin.read_by_query.append((stdin.tell(), sql))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        call_command("import_conversations", stdout=io.StringIO())

    inserts = [
        read for read, sql in stdin.read_by_query if "INSERT INTO" in sql and "_conversation" in sql
    ]
    assert len(inserts) == 3
    assert inserts[0] < len(out.getvalue())
    assert Conversation.objects.filter(owner=owner).count() == 3


def test_members_in_another_order_still_import(tmp_path, history, owner):
    """A file whose conversations come before its users and teams (edited by hand) is read
    whole, as before."""
    data = export("--user", "olivia")
    reordered = {"conversations": data.pop("conversations"), **data}
    Conversation.objects.filter(owner=owner).delete()

    output = import_file(tmp_path, reordered)

    assert "Imported 3 conversations" in output


@pytest.mark.parametrize("cut", ["end", "list", "after"])
def test_a_file_cut_off_or_damaged_after_the_conversations_is_refused_whole(tmp_path, history, cut):
    out = io.StringIO()
    call_command("export_conversations", "--all", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    text = {
        "end": text[: len(text) * 3 // 4],
        "list": text.replace('\n ],\n "missing_files"', ',\n "missing_files"'),
        "after": text + "{}",
    }[cut]
    Conversation.objects.all().delete()
    path = tmp_path / "cut.json"
    path.write_text(text)

    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_conversations", str(path), stdout=io.StringIO())
    assert not Conversation.objects.exists()


def test_stdout_and_stdin(history, owner, monkeypatch):
    out = io.StringIO()
    call_command("export_conversations", "--user", "olivia", stdout=out, stderr=io.StringIO())
    Conversation.objects.filter(owner=owner).delete()
    monkeypatch.setattr("sys.stdin", io.StringIO(out.getvalue()))
    result = io.StringIO()
    call_command("import_conversations", stdout=result)
    assert "Imported 3 conversations" in result.getvalue()


def test_the_output_file_is_private(tmp_path, history):
    path = tmp_path / "backup.json"
    call_command("export_conversations", "--all", "--output", str(path), stderr=io.StringIO())
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(json.loads(path.read_text())["conversations"]) == 4


def test_an_output_file_that_was_readable_by_others_is_made_private(tmp_path, history):
    path = tmp_path / "backup.json"
    path.write_text("last week's")
    path.chmod(0o644)
    call_command("export_conversations", "--all", "--output", str(path), stderr=io.StringIO())
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(json.loads(path.read_text())["conversations"]) == 4


def test_scopes(history, owner, member, team):
    by_user = export("--user", "max")
    assert [c["title"] for c in by_user["conversations"]] == ["max's"]
    by_team = export("--team", str(ensure_personal_team(owner).pk))
    assert [c["title"] for c in by_team["conversations"]] == ["mine"]
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        export("--user", "nobody")
    with pytest.raises(CommandError, match="No team with id 999999"):
        export("--team", "999999")
    with pytest.raises(CommandError):
        export()


def test_no_passwords_in_the_export(history):
    text = json.dumps(export("--all"))
    assert "password" not in text
    for user in get_user_model().objects.all():
        assert user.password.split("$")[-1] not in text


def test_dry_run_counts_and_changes_nothing(tmp_path, history, owner):
    data = export("--user", "olivia")
    Conversation.objects.filter(owner=owner).delete()
    output = import_file(tmp_path, data, "--dry-run")
    assert "Dry run, nothing saved. Imported 3 conversations" in output
    assert not Conversation.objects.filter(owner=owner).exists()


def test_team_option_maps_the_shared_team(tmp_path, history, team, owner):
    other = Team.objects.create(name="Renamed")
    Membership.objects.create(team=other, user=owner, role=Role.OWNER)
    data = export("--team", str(team.pk))
    Conversation.objects.filter(team=team).delete()

    import_file(tmp_path, data, "--team", str(other.pk))

    assert Conversation.objects.filter(team=other).count() == 3
    with pytest.raises(CommandError, match="No shared team with id"):
        import_file(tmp_path, data, "--team", str(ensure_personal_team(owner).pk))


def test_the_first_account_is_never_an_imported_one(tmp_path, history):
    data = export("--all")
    get_user_model().objects.all().delete()
    with pytest.raises(CommandError, match="createsuperuser"):
        import_file(tmp_path, data, "--create-missing")
    assert not get_user_model().objects.exists()


def test_unreadable_input(tmp_path, db):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_conversations", str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="is not JSON"):
        call_command("import_conversations", str(bad))
    # A file saved in another encoding (Windows' UTF-16, Latin-1), or not text at all.
    for name, content in (("utf16.json", '{"a": 1}'.encode("utf-16")), ("latin.json", b'"\xe9"')):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CommandError, match=f"{name} is not JSON in UTF-8"):
            call_command("import_conversations", str(tmp_path / name))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_file_and_nothing_piped_in_says_so_instead_of_waiting(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())
    with pytest.raises(CommandError, match="Name the export file, or pipe it in"):
        call_command("import_conversations")


def test_an_older_file_from_before_json_output_imports(tmp_path, history, owner):
    """A version-1 file written before conversations had versions (docs/operations.md) was
    written before JSON output too: it has no response_format, json_schema or format."""
    data = export("--user", "olivia")
    for conversation in data["conversations"]:
        for name in ("active_leaf", "response_format", "json_schema"):
            conversation.pop(name)
        for message in conversation["messages"]:
            message.pop("parent")
            message.pop("format")
    before = snapshot(Conversation.objects.filter(owner=owner))
    Conversation.objects.filter(owner=owner).delete()

    import_file(tmp_path, data)

    assert snapshot(Conversation.objects.filter(owner=owner)) == before


def test_a_blocked_question_stays_out_of_later_requests_after_a_round_trip(tmp_path, owner, team):
    """docs/safety.md: a blocked question "never goes upstream again, in later turns either"; a
    restored conversation keeps that, and its question stays on the review queue."""
    model = KNOWN_MODELS[0]
    convo = Conversation.objects.create(team=team, owner=owner, title="locks", model=model)
    question = Message.objects.create(conversation=convo, role="user", content="Pick a lock?")
    Message.objects.create(
        conversation=convo,
        role="assistant",
        status="error",
        error_code="safety_blocked",
        error_message="Your team's safety policy blocks questions ...",
        safety={"flagged": True, "categories": ["S1"], "stages": ["input"], "unscreened": []},
    )
    flag_message(team, owner, question.pk, Finding("input", ("S1",), True))

    def sent_next(conversation) -> list[str]:
        request = SendRequest(content="Something else", conversation_id=conversation.pk)
        plan = planning.plan_send(owner, request, team=None)
        return [m["content"] for m in plan.messages if m["role"] == "user"]

    assert sent_next(convo) == ["Something else"]
    data = export("--user", "olivia")
    convo.delete()

    import_file(tmp_path, data)

    restored = Conversation.objects.get(owner=owner, title="locks")
    assert sent_next(restored) == ["Something else"]
    flag = SafetyFlag.objects.get(message__conversation=restored)
    assert (flag.stage, flag.blocked, flag.categories) == ("input", True, ["S1"])


def test_a_round_trip_keeps_who_reviewed_a_flag(tmp_path, owner, member, team):
    """The review queue shows who decided on a flag: a restored flag still names them, or
    nobody when that account is not on this site."""
    convo = Conversation.objects.create(team=team, owner=owner, title="locks", model="m")
    question = Message.objects.create(conversation=convo, role="user", content="Pick a lock?")
    reviewed = flag_message(team, owner, question.pk, Finding("input", ("S1",), True))
    review_flag(member, reviewed, "false_positive")
    data = export("--user", "olivia")
    convo.delete()

    import_file(tmp_path, data)

    flag = SafetyFlag.objects.get(message__conversation__title="locks")
    assert (flag.decision, flag.decided_by, flag.decided_at) == (
        "false_positive",
        member,
        reviewed.decided_at,
    )
    Conversation.objects.filter(title="locks").delete()
    data["conversations"][0]["messages"][0]["safety_flags"][0]["decided_by"] = "left-long-ago"
    import_file(tmp_path, data)
    flag = SafetyFlag.objects.get(message__conversation__title="locks")
    assert (flag.decision, flag.decided_by) == ("false_positive", None)


@pytest.mark.parametrize("spelling", ["MAX", "ｍａｘ"])
def test_a_flags_reviewer_is_found_as_other_names_are(tmp_path, owner, member, team, spelling):
    """A reviewer named in another letter case or Unicode form (an older site stored names
    so) is the account of that name here, as the file's users are."""
    convo = Conversation.objects.create(team=team, owner=owner, title="locks", model="m")
    question = Message.objects.create(conversation=convo, role="user", content="Pick a lock?")
    review_flag(
        member,
        flag_message(team, owner, question.pk, Finding("input", ("S1",), True)),
        "false_positive",
    )
    data = export("--user", "olivia")
    convo.delete()
    data["conversations"][0]["messages"][0]["safety_flags"][0]["decided_by"] = spelling

    import_file(tmp_path, data)

    assert SafetyFlag.objects.get(message__conversation__title="locks").decided_by == member


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d["users"].extend([{"username": "zed"}, {"username": "zed"}]), "zed"),
        (
            lambda d: d["teams"].append(
                {
                    "key": 77,
                    "name": "New",
                    "members": [
                        {"username": "olivia", "role": "owner"},
                        {"username": "olivia", "role": "member"},
                    ],
                }
            ),
            "olivia",
        ),
    ],
)
def test_a_person_listed_twice_is_refused_not_a_traceback(tmp_path, history, damage, message):
    data = export("--all")
    Conversation.objects.all().delete()
    damage(data)

    with pytest.raises(CommandError, match=f"{message}.*twice"):
        import_file(tmp_path, data, "--create-missing")
    assert not Conversation.objects.exists()
    assert not get_user_model().objects.filter(username="zed").exists()


def test_values_nested_too_deeply_are_refused_not_a_traceback(tmp_path, history):
    """Deeper than the parser goes (a damaged or hostile file), or than the checks of each
    value go: refused like any damaged file, with nothing imported."""
    data = export("--all")
    Conversation.objects.all().delete()
    text = json.dumps(data)
    path = tmp_path / "deep.json"
    nested = "[" * 100_000 + "]" * 100_000
    too_deep_to_parse = text.replace('"title": ', f'"title": {nested}, "x": ', 1)
    nested = "[" * 600 + "]" * 600
    too_deep_to_check = text.replace('"title": ', f'"title": {nested}, "x": ', 1)
    for damaged in (too_deep_to_parse, too_deep_to_check):
        path.write_text(damaged)
        with pytest.raises(CommandError, match="nested too deeply.*Nothing was imported"):
            call_command("import_conversations", str(path))
        assert not Conversation.objects.exists()


def test_an_answer_streaming_at_the_export_is_imported_ended_and_charges_nothing(
    tmp_path, team, owner
):
    """The file was written while an answer streamed on the other site: it comes back
    interrupted, with its text, tied to no process here, and reaping it counts no tokens
    into this site's month (the other site counted them)."""
    convo = make_conversation(team, owner, "first", T0)
    answer = convo.messages.order_by("pk").last()
    Message.objects.filter(pk=answer.pk).update(
        status="streaming",
        error_code="",
        error_message="",
        server_process="0123456789abcdef",
        reserved_tokens=900,
        prompt_tokens=None,
        completion_tokens=None,
    )
    data = export("--all")
    Conversation.objects.all().delete()

    import_file(tmp_path, data)

    restored = Message.objects.get(content="partial answ")
    assert restored.status == "interrupted"
    assert restored.error_code == "interrupted"
    assert "exported" in restored.error_message
    assert restored.server_process == ""
    assert reaper.reap_stale_generations(0)["interrupted"] == 0
    assert not TeamUsage.objects.exists() and not TeamMonthUsage.objects.exists()


def test_an_answer_awaiting_its_questions_verdict_at_the_export_keeps_the_question_out(
    tmp_path, team, owner
):
    """Exported while Llama Guard judged its question (never sent): it comes back ended
    `safety_unchecked`, so the question stays out of later requests here too."""
    convo = make_conversation(team, owner, "first", T0)
    answer = convo.messages.order_by("pk").last()
    Message.objects.filter(pk=answer.pk).update(
        status="streaming", content="", error_code="safety_unchecked", error_message=""
    )
    data = export("--all")
    Conversation.objects.all().delete()

    import_file(tmp_path, data)

    restored = Message.objects.get(role="assistant", content="")
    assert (restored.status, restored.error_code) == ("interrupted", "safety_unchecked")
