"""daphne on uvloop's event loop: `python -m chatapp.core.server` takes daphne's own arguments.

Every relayed token is a few event-loop wake-ups (the upstream read, the socket's send), and
uvloop's loop costs about half of asyncio's own per wake-up: bench/README.md has the figures.
daphne creates its Twisted reactor's loop when `daphne.server` is first imported, so the
policy is set before that import. Where uvloop is not installed (it has no Windows build),
daphne runs on asyncio's loop as before.
"""

import asyncio


def use_uvloop() -> bool:
    """Make new event loops uvloop's; False where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> None:
    use_uvloop()
    from daphne.cli import CommandLineInterface  # imports daphne.server: after the policy

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
