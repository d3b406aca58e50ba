"""OIDC_GROUP_MAP: which values of the groups claim make someone a member of which team.

`engineering=Engineering:member,eng-leads=Engineering:admin` reads "the group engineering
joins the team Engineering as a member; eng-leads as an admin". Plain Python: settings.py
checks the variable with it at start-up."""

from dataclasses import dataclass

ROLES = ("member", "admin", "owner")  # lowest to highest
TEAM_NAME_MAX = 100  # Team.name's max_length


@dataclass(frozen=True)
class GroupRule:
    group: str
    team: str
    role: str


def parse_group_map(text: str) -> list[GroupRule]:
    """The rules in the variable; ValueError naming the bad entry and the expected shape.
    A team named in several letter cases is one team, under the spelling written first."""
    rules = []
    spellings: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        group, sep, target = entry.partition("=")
        team, colon, role = target.rpartition(":")
        if not (sep and colon and group.strip() and team.strip()) or role.strip() not in ROLES:
            raise ValueError(
                f"OIDC_GROUP_MAP entry {entry!r} must look like group=Team name:role,"
                f" with role one of {', '.join(ROLES)}"
            )
        if len(team.strip()) > TEAM_NAME_MAX:
            raise ValueError(
                f"OIDC_GROUP_MAP entry {entry!r} names a longer team than a team may have:"
                f" team names have at most {TEAM_NAME_MAX} characters"
            )
        team = spellings.setdefault(team.strip().casefold(), team.strip())
        rules.append(GroupRule(group.strip(), team, role.strip()))
    return rules


def roles_for(rules: list[GroupRule], groups: list[str]) -> dict[str, str]:
    """{team name: the highest role any of the person's groups gives in it}."""
    wanted: dict[str, str] = {}
    for rule in rules:
        if rule.group in groups:
            current = wanted.get(rule.team)
            if current is None or ROLES.index(rule.role) > ROLES.index(current):
                wanted[rule.team] = rule.role
    return wanted


def managed_teams(rules: list[GroupRule]) -> set[str]:
    """The teams the map decides membership of: anyone not in their groups is taken out."""
    return {rule.team for rule in rules}


def manages(rules: list[GroupRule], team_name: str) -> bool:
    """Whether the map decides who is in the team of this name (in any letter case)."""
    return team_name.casefold() in {team.casefold() for team in managed_teams(rules)}
