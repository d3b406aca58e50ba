"""Checks run before a request leaves the process, so bad input never reaches the API."""

import math
from typing import Any

from .limits import MODEL_MAX_OUTPUT
from .types import ChatParams, LlmValidationError

ROLES = ("system", "user", "assistant", "tool")
MAX_TEMPERATURE = {"llama": 1.0, "openai": 2.0}


def validate_chat(messages: list[dict[str, Any]], params: ChatParams, protocol: str) -> None:
    validate_messages(messages)
    if not isinstance(params.model, str) or not params.model.strip():
        raise LlmValidationError("model", "Choose a model.")
    if params.temperature is not None:
        high = MAX_TEMPERATURE[protocol]
        _check_range("temperature", params.temperature, 0.0, high)
    if params.top_p is not None:
        _check_range("top_p", params.top_p, 0.0, 1.0)
    if params.max_tokens is not None:
        _check_max_tokens(params.max_tokens, params.model)


def validate_messages(messages: list[dict[str, Any]]) -> None:
    if not isinstance(messages, list) or not messages:
        raise LlmValidationError("messages", "Send at least one message.")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise LlmValidationError("messages", f"Each message needs a role: {', '.join(ROLES)}.")
        if not isinstance(message.get("content"), str | list):
            raise LlmValidationError("messages", "Each message needs text content.")


# Messages name settings as the settings forms label them.
LABELS = {"temperature": "Temperature", "top_p": "Top p"}


def _check_range(name: str, value: float, low: float, high: float) -> None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or math.isnan(value) or not low <= value <= high:
        message = f"{LABELS[name]} must be a number between {low:g} and {high:g}."
        raise LlmValidationError(name, message)


def _check_max_tokens(value: int, model: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LlmValidationError("max_tokens", "Max tokens must be a positive whole number.")
    limit = MODEL_MAX_OUTPUT.get(model)
    if limit is not None and value > limit:
        raise LlmValidationError("max_tokens", f"Max tokens must be at most {limit} for {model}.")
