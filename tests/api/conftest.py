import pytest

from chatapp.chat.models import Conversation, Message


@pytest.fixture
def make_conversation(team):
    def make(owner, title="A chat", messages=(), **fields):
        conversation = Conversation.objects.create(
            team=team, owner=owner, title=title, model="Llama-3.3-70B-Instruct", **fields
        )
        for role, content in messages:
            Message.objects.create(conversation=conversation, role=role, content=content)
        return conversation

    return make


@pytest.fixture
def chat(make_conversation, member):
    return make_conversation(
        member,
        title="Tax questions",
        messages=[("user", "How do I file taxes?"), ("assistant", "Start with **form A**.")],
        system_prompt_text="Be brief.",
    )
