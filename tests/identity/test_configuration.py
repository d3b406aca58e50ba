"""The OpenID Connect variables: read at start-up, a bad value stops it naming the variable."""

import pytest

from chatapp.core.group_map import managed_teams, parse_group_map, roles_for
from chatapp.identity.models import OIDCIdentity
from tests.core.test_settings import load_settings

SSO = {
    "SECRET_KEY": "x" * 50,
    "OIDC_ISSUER_URL": "https://id.example.com/realms/acme/",
    "OIDC_CLIENT_ID": "chat",
    "OIDC_CLIENT_SECRET": "s3cret",
}


def test_the_group_map_reads_groups_teams_and_roles():
    rules = parse_group_map(" engineering=Engineering:member, eng-leads=Engineering:admin,,")
    assert [(r.group, r.team, r.role) for r in rules] == [
        ("engineering", "Engineering", "member"),
        ("eng-leads", "Engineering", "admin"),
    ]
    assert managed_teams(rules) == {"Engineering"}


def test_the_highest_role_of_a_persons_groups_wins():
    rules = parse_group_map("a=T:admin,b=T:member,c=U:member,d=Team: with colon:owner")
    assert roles_for(rules, ["b", "a", "c"]) == {"T": "admin", "U": "member"}
    assert roles_for(rules, ["d"]) == {"Team: with colon": "owner"}
    assert roles_for(rules, []) == {}


def test_a_team_written_in_two_letter_cases_is_one_team_under_its_first_spelling():
    rules = parse_group_map("a=Eng:member,b=ENG:admin")
    assert managed_teams(rules) == {"Eng"}
    assert roles_for(rules, ["a"]) == {"Eng": "member"}
    assert roles_for(rules, ["a", "b"]) == {"Eng": "admin"}


@pytest.mark.parametrize(
    "text", ["engineering", "g=Team", "g=Team:boss", "=Team:member", "g=:admin"]
)
def test_a_malformed_entry_is_named(text):
    with pytest.raises(ValueError, match="must look like group=Team name:role"):
        parse_group_map(text)


def test_a_team_name_longer_than_a_team_can_have_is_named():
    # Else every sign-in of that group's people failed (PostgreSQL refuses the team's name).
    assert parse_group_map("g=" + "T" * 100 + ":member")[0].team == "T" * 100
    with pytest.raises(ValueError, match="team names have at most 100 characters"):
        parse_group_map("g=" + "T" * 101 + ":member")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"OIDC_GROUP_MAP": "engineering=Engineering"},
            "OIDC_GROUP_MAP entry 'engineering=Engineering'",
        ),
        (
            {"OIDC_GROUP_MAP": "g=" + "T" * 101 + ":member"},
            "team names have at most 100 characters",
        ),
        ({"OIDC_CLIENT_SECRET": ""}, "set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET"),
        (
            {"OIDC_ISSUER_URL": "https://id.example.com/" + "r" * 477},
            "OIDC_ISSUER_URL has 500 characters: at most 499 fit",
        ),
        ({"OIDC_ISSUER_URL": "id.example.com"}, "OIDC_ISSUER_URL must start with"),
        ({"OIDC_SCOPES": "email profile"}, "OIDC_SCOPES must include openid"),
        ({"OIDC_SIGN_ALGO": "HS256"}, "OIDC_SIGN_ALGO must be one of"),
        (
            {"OIDC_ISSUER_URL": "", "LOCAL_PASSWORDS": "off"},
            "LOCAL_PASSWORDS is off: set OIDC_ISSUER_URL",
        ),
    ],
)
def test_bad_configuration_stops_start_up(overrides, message):
    result = load_settings(**{**SSO, **overrides})
    assert result.returncode != 0 and message in result.stderr


def test_the_longest_issuer_that_fits_starts_and_fits_the_identities_column():
    # Else every sign-in was a server error on PostgreSQL, which refuses the longer issuer.
    longest = "https://id.example.com/" + "r" * 476
    assert len(longest) == 499
    result = load_settings(**{**SSO, "OIDC_ISSUER_URL": longest})
    assert result.returncode == 0, result.stderr
    # One more character: the slash a provider may end its issuer with, as it is stored.
    assert OIDCIdentity._meta.get_field("issuer").max_length == len(longest) + 1


def test_a_good_configuration_starts():
    result = load_settings(**SSO, OIDC_GROUP_MAP="eng=Engineering:member", LOCAL_PASSWORDS="off")
    assert result.returncode == 0, result.stderr
