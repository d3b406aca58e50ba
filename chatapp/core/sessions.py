"""Django's database sessions, read with one plain statement (SESSION_ENGINE).

Every HTTP request and every answer a socket starts reads its session. Django's version
builds the query with the ORM each time, which costs about five times what running it does
(bench/README.md); the row, the expiry check and everything that writes sessions stay
Django's.
"""

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.db import connections, router
from django.utils import timezone

KEY_CHARACTERS = frozenset(VALID_KEY_CHARS)


class SessionStore(db.SessionStore):
    def _validate_session_key(self, key):
        # Only the characters Django makes keys of: a cookie may carry any other (a NUL, as a
        # quoted value's octal escape), which PostgreSQL refuses as a query parameter.
        return super()._validate_session_key(key) and set(key) <= KEY_CHARACTERS

    def _get_session_from_db(self):
        if self.session_key is None:  # Django's setter leaves None for a malformed key
            return None
        model = self.model
        connection = connections[router.db_for_read(model)]
        table = connection.ops.quote_name(model._meta.db_table)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT session_data FROM {table} WHERE session_key = %s AND expire_date > %s",
                [self.session_key, now],
            )
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return model(session_key=self.session_key, session_data=row[0])

    async def _aget_session_from_db(self):
        return await sync_to_async(self._get_session_from_db)()
