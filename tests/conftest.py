import pytest
from django.contrib.auth import get_user_model

from chatapp.teams.models import Membership, Role, Team

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The suite creates hundreds of users; production's slow hasher is not what it tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    def make(username: str, **extra):
        return get_user_model().objects.create_user(
            username=username, email=f"{username}@example.com", password=PASSWORD, **extra
        )

    return make


@pytest.fixture
def site_admin(make_user):
    """The first account: created before the others so it is the site admin."""
    return make_user("siteadmin")


@pytest.fixture
def team(db, site_admin):
    return Team.objects.create(name="Acme")


@pytest.fixture
def owner(make_user, team):
    user = make_user("olivia")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def admin_member(make_user, team):
    user = make_user("adam")
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def member(make_user, team):
    user = make_user("max")
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def outsider(make_user, site_admin):
    return make_user("eve")


def client_for(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(client, owner):
    return client_for(client, owner)


@pytest.fixture
def member_client(client, member):
    return client_for(client, member)


@pytest.fixture
def outsider_client(client, outsider):
    return client_for(client, outsider)
