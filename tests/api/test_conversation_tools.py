"""Answers that called tools, as the conversation API and its exports show them."""

import json

import pytest

from chatapp.chat.models import Message

CALLS = [
    {
        "id": "call_1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
        "status": "done",
        "content": "<script>alert(1)</script> ~~~~ sunny",
        "is_error": False,
        "elapsed": 0.4,
        "round": 1,
        "offset": 0,
    },
    {
        "id": "call_2",
        "name": "create_ticket",
        "arguments": "{}",
        "status": "done",
        "content": "The user declined this call.",
        "is_error": True,
        "elapsed": 0.0,
        "round": 1,
        "offset": 0,
    },
]


@pytest.fixture
def answered(chat):
    answer = chat.messages.get(role="assistant")
    Message.objects.filter(pk=answer.pk).update(tool_calls=CALLS)
    return chat


def url(conversation) -> str:
    return f"/api/conversations/{conversation.pk}/"


def test_the_detail_lists_an_answers_calls_and_the_tools_setting(member_client, answered):
    data = member_client.get(url(answered)).json()
    question, answer = data["messages"]
    assert question["tool_calls"] is None
    assert answer["tool_calls"] == CALLS
    assert data["settings"]["tools"] is True


def test_tools_off_shows_in_the_settings(member_client, answered):
    answered.tools_enabled = False
    answered.save(update_fields=["tools_enabled"])
    assert member_client.get(url(answered)).json()["settings"]["tools"] is False


def test_the_markdown_export_fences_arguments_and_results(member_client, answered):
    text = member_client.get(url(answered) + "export", {"format": "md"}).content.decode()
    assert "**Tool call** `get_weather`" in text
    assert '"city": "Paris"' in text  # the arguments, indented
    # The result's own ~~~~ cannot close the fence around it.
    assert "~~~~~\n<script>alert(1)</script> ~~~~ sunny\n~~~~~" in text
    assert "**Tool error**" in text and "The user declined this call." in text
    assert text.index("get_weather") < text.index("Start with **form A**.")


def test_arguments_nested_past_the_json_parser_export_as_written(member_client, chat):
    """A model's arguments are its own text: kept, and exported as they came."""
    deep = "[" * 5000 + "]" * 5000
    answer = chat.messages.get(role="assistant")
    Message.objects.filter(pk=answer.pk).update(tool_calls=[{**CALLS[0], "arguments": deep}])
    response = member_client.get(url(chat) + "export", {"format": "md"})
    assert response.status_code == 200
    assert f"~~~~~json\n{deep}\n~~~~~" in response.content.decode()


def test_the_json_export_carries_the_calls(member_client, answered):
    data = json.loads(member_client.get(url(answered) + "export", {"format": "json"}).content)
    assert data["messages"][-1]["tool_calls"] == CALLS
    assert data["tree"][-1]["tool_calls"] == CALLS
