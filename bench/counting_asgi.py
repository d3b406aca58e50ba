"""chatapp.asgi with every SQL statement counted by kind and table, for bench/database.py.

`GET /_bench/queries` answers the counts so far as JSON ({"UPDATE chat_message": 12, ...});
every other request goes to the app unchanged. Only the benchmark serves this module.
"""

import json
import re
import threading
from collections import Counter

from django.db.backends.signals import connection_created

from chatapp.asgi import application as chat_application

STATEMENT = re.compile(r'\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
COUNTS: Counter = Counter()
_lock = threading.Lock()  # connections live in several worker threads


def _kind(sql: str) -> str:
    match = STATEMENT.match(sql)
    if match:
        verb = match[1].split()[0].upper()
        return f"{verb} {match[2]}"
    return sql.split(None, 1)[0].upper() if sql.strip() else "EMPTY"


def count_statement(execute, sql, params, many, context):
    kind = _kind(sql)
    with _lock:
        COUNTS[kind] += len(params) if many else 1
    return execute(sql, params, many, context)


def _install(sender, connection, **kwargs) -> None:
    if count_statement not in connection.execute_wrappers:
        connection.execute_wrappers.append(count_statement)


connection_created.connect(_install)


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"] == "/_bench/queries":
        with _lock:
            body = json.dumps(dict(COUNTS)).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await chat_application(scope, receive, send)
