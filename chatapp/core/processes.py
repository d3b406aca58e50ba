"""Which server process this is, and what is ended at once when one dies without stopping.

Every server process has a token of its own: the one `manage.py serve` hands each process it
starts (`TOKEN_ENV`, new for every start, so a restarted process or a reused pid never shares
one), or one the process makes itself when started some other way. What a process runs names
it (an answer's row, `Message.server_process`). When the supervisor (`chatapp.core.supervisor`)
sees one of its processes exit, by a crash, SIGKILL or the out-of-memory killer, it runs the
hooks the apps registered with `when_process_ends` with that process's token: the answers it
was streaming end then, instead of when another process's reaper finds their heartbeat stale.
"""

import logging
import os
import uuid
from collections.abc import Callable

from django.db import connections

log = logging.getLogger(__name__)

TOKEN_ENV = "CHAT_SERVER_PROCESS"
SUPERVISOR_ENV = "CHAT_SUPERVISOR_PID"  # the supervisor that started this process

_token = os.environ.get(TOKEN_ENV) or uuid.uuid4().hex
_hooks: list[Callable[[str], None]] = []


def token() -> str:
    """This process's token."""
    return _token


def new_token() -> str:
    """A token for a process about to start."""
    return uuid.uuid4().hex


def supervisor_gone() -> bool:
    """Whether the supervisor that started this process (SUPERVISOR_ENV) has exited already.

    It arms the process's death signal before the process runs (PR_SET_PDEATHSIG), but a
    supervisor killed before that, or while the signal could still only reach its own handler
    (until the exec), leaves the process to another parent with no signal to come. Checked
    first thing after the exec: from then on the death signal ends the process."""
    expected = os.environ.pop(SUPERVISOR_ENV, "")
    return expected.isascii() and expected.isdigit() and os.getppid() != int(expected)


def when_process_ends(hook: Callable[[str], None]) -> None:
    """hook(token) runs, in the supervisor, once the process with that token has exited."""
    if hook not in _hooks:
        _hooks.append(hook)


def process_ended(ended: str) -> None:
    """Run the hooks for the process whose token is `ended` (it has exited: it runs nothing).

    Each hook's failure is logged and the next runs; whatever is left is the reaper's, as
    before. Called on a thread of its own: the database connections it opened close here.
    """
    try:
        for hook in list(_hooks):
            try:
                hook(ended)
            except Exception:
                log.exception("Ending what a server process left running failed")
    finally:
        connections.close_all()
