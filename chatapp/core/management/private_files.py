"""Files the management commands write hold people's conversations or the audit trail: they
are readable by their owner only, and appear whole or not at all."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TextIO


@contextmanager
def private_file(path: str) -> Iterator[TextIO]:
    """Text written to a new file beside `path` (mode 0600) that replaces it once complete: a
    run that fails part way leaves an earlier file at `path` as it was, and no partial one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with open(fd, "w", encoding="utf-8", newline="") as file:
            yield file
        os.replace(partial, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(partial)
        raise
