"""The session's team with its policy and provider, in one plain statement: the same
instances, relations and values as the ORM's select_related."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatapp.teams.models import Membership, Role, Team, TeamPolicy, TeamProvider
from chatapp.teams.reads import first_team_with_rules, team_with_rules

pytestmark = pytest.mark.django_db


def orm_read(team: Team) -> Team:
    return Team.objects.select_related("policy", "provider").get(pk=team.pk)


def values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_a_team_with_a_policy_and_a_provider_reads_as_the_orm_reads_it(team, member):
    TeamPolicy.objects.create(
        team=team,
        allowed_models=["Llama-4-Maverick-17B-128E-Instruct-FP8"],
        default_temperature=0.3,
        monthly_token_budget=50_000,
        safety_input="block",
        data_patterns=[{"label": "ticket", "pattern": "TCK-[0-9]+"}],
        legal_hold=True,
    )
    TeamProvider.objects.create(team=team, base_url="http://127.0.0.1:9/v1", protocol="openai")
    with CaptureQueriesContext(connection) as queries:
        read = team_with_rules(member, team.pk)
        policy, provider = read.policy, read.provider
    assert len(queries) == 1
    expected = orm_read(team)
    assert values(read) == values(expected)
    assert values(policy) == values(expected.policy)
    assert values(provider) == values(expected.provider)
    assert policy.legal_hold is True and policy.safety_input == "block"
    assert policy.allowed_models == ["Llama-4-Maverick-17B-128E-Instruct-FP8"]
    assert policy.team is read and provider.team is read  # no read back to the team
    assert read.created_at.tzinfo is not None
    assert read._state.adding is False and read._state.db == "default"


def test_without_policy_or_provider_both_are_known_to_be_missing(team, member):
    read = team_with_rules(member, team.pk)
    assert Team.policy.is_cached(read) and Team.provider.is_cached(read)
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(TeamPolicy.DoesNotExist):
            _ = read.policy
        with pytest.raises(TeamProvider.DoesNotExist):
            _ = read.provider
    assert len(queries) == 0


def test_another_users_team_is_never_read(team, member, outsider):
    other = Team.objects.create(name="Other")
    Membership.objects.create(team=other, user=outsider, role=Role.OWNER)
    assert team_with_rules(member, other.pk) is None
    assert team_with_rules(outsider, team.pk) is None
    assert team_with_rules(outsider, other.pk) == other
    assert team_with_rules(member, 10**9) is None


def test_the_first_team_is_the_users_oldest(team, member):
    newer = Team.objects.create(name="Newer")
    Membership.objects.create(team=newer, user=member, role=Role.MEMBER)
    Team.objects.filter(pk=newer.pk).update(created_at=team.created_at + timedelta(days=1))
    first = first_team_with_rules(member)
    assert first == team and Team.policy.is_cached(first)
    assert team_with_rules(member, newer.pk) == newer


def test_a_user_in_no_team_has_none(outsider, team):
    assert team_with_rules(outsider, team.pk) is None
    assert first_team_with_rules(outsider) is None
