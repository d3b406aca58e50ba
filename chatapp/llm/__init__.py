"""Llama API access: a streaming client for the native and OpenAI-compatible protocols.

Plain async Python with no Django models, so the chat app and tests can use it anywhere.
"""

from .client import LlamaClient, shared_http_client
from .limits import (
    KNOWN_MODELS,
    MODEL_CONTEXT_LIMITS,
    MODEL_MAX_OUTPUT,
    count_message_tokens,
    count_tokens_estimate,
    count_tokens_estimate_of_length,
)
from .moderation import GUARD_CATEGORIES, Verdict
from .protocols import token_count
from .types import (
    ChatParams,
    Finish,
    LlmError,
    LlmValidationError,
    ProviderConfig,
    Retrying,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCalls,
    Usage,
    url_problem,
)

__all__ = [
    "GUARD_CATEGORIES",
    "KNOWN_MODELS",
    "MODEL_CONTEXT_LIMITS",
    "MODEL_MAX_OUTPUT",
    "ChatParams",
    "Finish",
    "LlamaClient",
    "LlmError",
    "LlmValidationError",
    "ProviderConfig",
    "Retrying",
    "StreamError",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCalls",
    "Usage",
    "Verdict",
    "count_message_tokens",
    "count_tokens_estimate",
    "count_tokens_estimate_of_length",
    "shared_http_client",
    "token_count",
    "url_problem",
]
