"""Accounts added, given or refused access, and deleted in the admin site are in the audit
trail, as the site's events: who may sign in, reach /admin/ or the site's pages is audited."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from chatapp.teams.audit_trail import verify_chain
from chatapp.teams.models import AuditEvent

URL = "/admin/auth/user/"


def events(action: str) -> list[tuple]:
    found = AuditEvent.objects.filter(action=action).order_by("id")
    return [(e.team, e.actor_name, e.summary, e.details) for e in found]


def change_form(user, **access) -> dict:
    """The admin's change form as the page sends it back, with `access` changed."""
    form = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    flags = {"is_active": user.is_active, "is_staff": user.is_staff, **access}
    flags["is_superuser"] = access.get("is_superuser", user.is_superuser)
    return {**form, **{name: "on" for name, on in flags.items() if on}}


def test_creating_a_user_is_audited(client, site_admin):
    client.force_login(site_admin)
    form = {"username": "newbie", "password1": "a-long-pass-phrase-9"}
    form["password2"] = form["password1"]
    assert client.post(f"{URL}add/", form).status_code == 302
    assert get_user_model().objects.filter(username="newbie").exists()
    assert events("user.create") == [
        (
            None,
            "siteadmin",
            "siteadmin created the user newbie in the admin site",
            {"user": "newbie", "is_active": True, "is_staff": False, "is_superuser": False},
        )
    ]


def test_making_someone_a_site_admin_or_blocking_them_is_audited(client, site_admin, member):
    client.force_login(site_admin)
    change = f"{URL}{member.pk}/change/"
    assert (
        client.post(change, change_form(member, is_staff=True, is_superuser=True)).status_code
        == 302
    )
    member.refresh_from_db()
    assert member.is_superuser
    assert client.post(change, change_form(member, first_name="Max")).status_code == 302  # no event
    assert client.post(change, change_form(member, is_active=False)).status_code == 302
    assert events("user.access") == [
        (
            None,
            "siteadmin",
            "siteadmin changed is_staff, is_superuser of max in the admin site",
            {
                "user": "max",
                "old": {"is_staff": False, "is_superuser": False},
                "new": {"is_staff": True, "is_superuser": True},
            },
        ),
        (
            None,
            "siteadmin",
            "siteadmin changed is_active of max in the admin site",
            {"user": "max", "old": {"is_active": True}, "new": {"is_active": False}},
        ),
    ]
    assert verify_chain()[1] is None


def test_renaming_a_user_or_changing_their_email_is_audited(client, site_admin, member):
    # The email is what company sign-in matches; the username is what the trail names.
    client.force_login(site_admin)
    change = f"{URL}{member.pk}/change/"
    old_email = member.email
    form = {**change_form(member), "username": "maxine", "email": "maxine@example.com"}
    assert client.post(change, form).status_code == 302
    member.refresh_from_db()
    assert (member.username, member.email) == ("maxine", "maxine@example.com")
    assert client.post(change, change_form(member)).status_code == 302  # no event
    form = {**change_form(member, is_active=False), "email": "max@example.org"}
    assert client.post(change, form).status_code == 302
    assert events("user.identity") == [
        (
            None,
            "siteadmin",
            "siteadmin changed username, email of maxine in the admin site",
            {
                "user": "maxine",
                "old": {"username": "max", "email": old_email},
                "new": {"username": "maxine", "email": "maxine@example.com"},
            },
        ),
        (
            None,
            "siteadmin",
            "siteadmin changed email of maxine in the admin site",
            {
                "user": "maxine",
                "old": {"email": "maxine@example.com"},
                "new": {"email": "max@example.org"},
            },
        ),
    ]
    # The same save's change of access is its own event.
    assert [details["new"] for *_, details in events("user.access")] == [{"is_active": False}]
    assert verify_chain()[1] is None


def test_a_name_or_an_email_another_account_has_is_refused_in_any_letter_case(
    client, site_admin, member
):
    """As at signup: two accounts told apart by letter case only would read as one person in
    the teams and the trail, and company sign-in could not tell which one an address is."""
    client.force_login(site_admin)
    change = f"{URL}{member.pk}/change/"
    for field, taken in (("username", "SiteAdmin"), ("email", "SITEADMIN@example.com")):
        response = client.post(change, {**change_form(member), field: taken})
        assert response.status_code == 200, field
        assert "already" in response.content.decode()
    member.refresh_from_db()
    assert (member.username, member.email) == ("max", "max@example.com")
    assert not events("user.identity")
    # Its own name and address in another case, or no address, are still fine.
    form = {**change_form(member), "username": "Max", "email": "MAX@example.com"}
    assert client.post(change, form).status_code == 302
    get_user_model().objects.filter(pk=site_admin.pk).update(email="")
    assert client.post(change, {**change_form(member), "email": ""}).status_code == 302


def test_deleting_a_user_with_no_team_is_audited_too(client, site_admin, make_user):
    loner = make_user("loner")
    client.force_login(site_admin)
    assert client.post(f"{URL}{loner.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not get_user_model().objects.filter(pk=loner.pk).exists()
    assert events("user.delete") == [
        (None, "siteadmin", "siteadmin deleted the user loner in the admin site", {"user": "loner"})
    ]


def test_setting_someone_s_password_is_audited_without_the_password(client, site_admin, member):
    client.force_login(site_admin)
    page = f"{URL}{member.pk}/password/"
    secret = "another-long-phrase-7"
    form = {"password1": secret, "password2": secret, "usable_password": "true"}
    assert client.post(page, form).status_code == 302
    member.refresh_from_db()
    assert member.check_password(secret)
    mismatched = {**form, "password2": "not-the-same-phrase-7"}
    assert client.post(page, mismatched).status_code == 200  # refused: nothing set, no event
    assert client.post(f"{URL}0/password/", form).status_code == 404  # no such user
    assert events("user.password") == [
        (
            None,
            "siteadmin",
            "siteadmin set the password of max in the admin site",
            {"user": "max", "usable": True},
        )
    ]
    assert secret not in str(AuditEvent.objects.values_list("summary", "details"))


def permission(codename: str) -> Permission:
    return Permission.objects.get(codename=codename)


def test_a_users_groups_and_permissions_changed_there_are_audited(client, site_admin, member):
    """They decide what a staff account may do in the admin site, as is_staff decides whether
    it may reach it."""
    editors = Group.objects.create(name="editors")
    client.force_login(site_admin)
    change = f"{URL}{member.pk}/change/"
    form = change_form(member, is_staff=True)
    granted = {**form, "groups": [editors.pk], "user_permissions": [permission("change_user").pk]}
    assert client.post(change, granted).status_code == 302
    assert set(member.groups.all()) == {editors}
    assert client.post(change, {**granted, "first_name": "Max"}).status_code == 302  # no event
    assert client.post(change, {**form, "groups": [editors.pk]}).status_code == 302
    assert events("user.permissions") == [
        (
            None,
            "siteadmin",
            "siteadmin changed the permissions and groups of max in the admin site",
            {
                "user": "max",
                "old": {"permissions": [], "groups": []},
                "new": {"permissions": ["auth.change_user"], "groups": ["editors"]},
            },
        ),
        (
            None,
            "siteadmin",
            "siteadmin changed the permissions of max in the admin site",
            {
                "user": "max",
                "old": {"permissions": ["auth.change_user"]},
                "new": {"permissions": []},
            },
        ),
    ]
    assert verify_chain()[1] is None


def test_a_groups_permissions_and_its_deletion_are_audited(client, site_admin, member):
    client.force_login(site_admin)
    groups = "/admin/auth/group/"
    viewer = permission("view_user").pk
    assert (
        client.post(f"{groups}add/", {"name": "helpdesk", "permissions": [viewer]}).status_code
        == 302
    )
    helpdesk = Group.objects.get(name="helpdesk")
    member.groups.add(helpdesk)
    change = f"{groups}{helpdesk.pk}/change/"
    assert client.post(change, {"name": "helpdesk", "permissions": [viewer]}).status_code == 302
    assert client.post(f"{groups}{helpdesk.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Group.objects.filter(pk=helpdesk.pk).exists()
    assert events("group.permissions") == [
        (
            None,
            "siteadmin",
            "siteadmin changed the permissions of group helpdesk in the admin site",
            {
                "group": "helpdesk",
                "old": {"permissions": []},
                "new": {"permissions": ["auth.view_user"]},
            },
        )
    ]
    assert events("group.delete") == [
        (
            None,
            "siteadmin",
            "siteadmin deleted group helpdesk in the admin site",
            {"group": "helpdesk", "members": ["max"], "permissions": ["auth.view_user"]},
        )
    ]
