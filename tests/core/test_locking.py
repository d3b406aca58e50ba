import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from chatapp.core.locking import locked_if_there
from chatapp.teams.models import Team
from tests.databases import uses_postgres, wait_for_lock_waiters


@pytest.mark.django_db
def test_locked_if_there_says_whether_a_row_is_there_in_one_statement():
    team = Team.objects.create(name="Research")
    rows = Team.objects.filter(pk=team.pk)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert locked_if_there(rows) is True
    assert len([q for q in queries if q["sql"].startswith("SELECT")]) == 1

    team.delete()
    with transaction.atomic():
        assert locked_if_there(rows) is False


@pytest.mark.skipif(not uses_postgres(), reason="SQLite has no row locks")
@pytest.mark.django_db(transaction=True)
def test_a_row_deleted_while_its_lock_is_awaited_is_seen_gone():
    team = Team.objects.create(name="Research")
    answers = []

    def lock_it():
        try:
            with transaction.atomic():
                answers.append(locked_if_there(Team.objects.filter(pk=team.pk), no_key=True))
        finally:
            connection.close()

    waiter = threading.Thread(target=lock_it)
    with transaction.atomic():
        Team.objects.filter(pk=team.pk).delete()
        waiter.start()
        wait_for_lock_waiters(1)
    waiter.join()
    assert answers == [False]
