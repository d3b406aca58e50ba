"""The team's usage page shows how much room its files take, against the quota."""

import pytest
from django.urls import reverse

from chatapp.teams.models import Membership, Role, Team

pytestmark = pytest.mark.django_db


def test_usage_page_shows_the_teams_files_against_the_quota(
    owner_client, owner, member, team, make_upload, settings
):
    settings.UPLOAD_TEAM_QUOTA_BYTES = 5 * 1024 * 1024
    uploads = [make_upload(member), make_upload(member), make_upload(owner, "a.md", b"# a\n")]
    response = owner_client.get(reverse("teams:usage", args=[team.pk]))
    storage = response.context["storage"]
    assert (storage.files, storage.used) == (3, sum(u.size for u in uploads))
    assert b"3 files attached in this team take" in response.content
    assert b"of its 5.0\xc2\xa0MB" in response.content


def test_other_teams_files_do_not_count(owner_client, owner, team, make_upload):
    elsewhere = Team.objects.create(name="Elsewhere")
    Membership.objects.create(team=elsewhere, user=owner, role=Role.OWNER)
    make_upload(owner, in_team=elsewhere)
    response = owner_client.get(reverse("teams:usage", args=[team.pk]))
    assert (response.context["storage"].files, response.context["storage"].used) == (0, 0)
    assert b"No files are attached in this team yet: they may take up to" in response.content


def test_one_file_takes_in_the_singular(owner_client, owner, team, make_upload, settings):
    settings.UPLOAD_TEAM_QUOTA_BYTES = 0
    upload = make_upload(owner)
    response = owner_client.get(reverse("teams:usage", args=[team.pk]))
    html = response.content.decode()
    assert f"1 file attached in this team takes {upload.size}\xa0bytes (no limit)." in html
