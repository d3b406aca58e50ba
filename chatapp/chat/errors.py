"""The error every chat request refusal raises."""


class ChatError(Exception):
    """A request the chat refuses; `code` is stable, `message` tells the user what to do."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
