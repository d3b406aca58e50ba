"""Channel-layer group names: who hears a conversation's events, who controls an answer."""


def conversation_group(conversation_id: int) -> str:
    """Every socket following the conversation."""
    return f"chat.conversation.{conversation_id}"


def generation_group(message_id: int) -> str:
    """The process generating the answer (stop and snapshot requests)."""
    return f"chat.generation.{message_id}"
