"""Files the management commands write hold people's conversations or the audit trail: they
are readable by their owner only."""

import os
from typing import TextIO


def open_private(path: str) -> TextIO:
    """`path` opened for writing text, made readable by its owner alone, also when it existed
    before with wider permissions (the mode given to os.open applies only to a new file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return open(fd, "w", encoding="utf-8", newline="")
