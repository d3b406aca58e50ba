"""A Django shell that stays up: reads {"code"} JSON lines on stdin, answers JSON lines.

Started by tests/browser/conftest.py with the live server's environment, so seeding data
costs one exec instead of one Django start-up per call. Each reply is {"ok", "stdout"} plus
"error" (a traceback) when the code raised.
"""

import contextlib
import io
import json
import os
import sys
import traceback

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapp.settings")
    django.setup()
    from django.db import close_old_connections

    replies = sys.stdout
    for line in sys.stdin:
        output = io.StringIO()
        reply = {"ok": True}
        try:
            with contextlib.redirect_stdout(output):
                exec(json.loads(line)["code"], {})  # noqa: S102 - test-only, code from the suite
        except Exception:
            reply = {"ok": False, "error": traceback.format_exc()}
        finally:
            close_old_connections()
        reply["stdout"] = output.getvalue()
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
