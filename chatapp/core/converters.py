"""`<id:name>` in a page's address: a whole number that a database key can hold.

Django's `<int:...>` takes any length of digits, and a number past the databases' bigint fails
the query (SQLite raises `OverflowError`, a 500) where the page would answer 404 for an id that
names nothing. Such a number does not match the address at all, so it is that 404."""

from chatapp.core.api import MAX_ID


class IdConverter:
    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number <= MAX_ID:
            raise ValueError("no database key is that large")
        return number

    def to_url(self, value: int) -> str:
        return str(value)
