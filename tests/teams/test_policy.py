"""Model policy: what effective_settings, validate_settings and allowed_models enforce, and the
policy page that sets it."""

import pytest
from django.urls import reverse

from chatapp.accounts.models import UserSettings
from chatapp.accounts.preferences import effective_settings, user_defaults
from chatapp.teams import actions, policy
from chatapp.teams.models import AuditEvent, TeamPolicy
from chatapp.teams.policy import PolicyError, allowed_models, validate_settings

MAVERICK = "Llama-4-Maverick-17B-128E-Instruct-FP8"
SCOUT = "Llama-4-Scout-17B-16E-Instruct-FP8"
SMALL = "Llama-3.3-8B-Instruct"


@pytest.fixture
def restricted(team):
    return TeamPolicy.objects.create(
        team=team,
        allowed_models=[SCOUT, SMALL],
        default_model=SMALL,
        default_temperature=0.3,
        max_tokens_limit=1000,
    )


def test_without_a_policy_every_site_model_and_the_site_defaults(team, member, settings):
    settings.LLAMA_DEFAULT_MODEL = MAVERICK
    assert allowed_models(team)[0] == MAVERICK and SMALL in allowed_models(team)
    assert effective_settings(member, team) == {
        "model": MAVERICK,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 2048,
    }


def test_team_defaults_and_ceilings_apply(team, member, restricted):
    assert allowed_models(team) == [SCOUT, SMALL]
    assert effective_settings(member, team) == {
        "model": SMALL,
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 1000,  # the site default 2048 is over the team's ceiling
    }


def test_user_defaults_override_team_defaults(team, member, restricted):
    UserSettings.objects.create(user=member, model=SCOUT, temperature=0.8, top_p=0.5)
    values = effective_settings(member, team)
    assert (values["model"], values["temperature"], values["top_p"]) == (SCOUT, 0.8, 0.5)


def test_saved_defaults_the_team_does_not_allow_are_skipped(team, member, restricted):
    UserSettings.objects.create(user=member, model=MAVERICK, max_tokens=5000)
    values = effective_settings(member, team)
    assert values["model"] == SMALL and values["max_tokens"] == 1000


def test_requests_override_everything_within_the_policy(team, member, restricted):
    requested = {"model": SCOUT, "temperature": 0.0, "max_tokens": 1000, "top_p": 1}
    assert effective_settings(member, team, requested) == requested


@pytest.mark.parametrize(
    ("requested", "code", "field"),
    [
        ({"model": MAVERICK}, "model_not_allowed", "model"),
        ({"model": "gpt-4"}, "model_not_allowed", "model"),
        ({"model": 7}, "model_not_allowed", "model"),
        ({"max_tokens": 1001}, "invalid_setting", "max_tokens"),
        ({"max_tokens": 0}, "invalid_setting", "max_tokens"),
        ({"max_tokens": 10.5}, "invalid_setting", "max_tokens"),
        ({"max_tokens": True}, "invalid_setting", "max_tokens"),
        ({"temperature": 1.5}, "invalid_setting", "temperature"),  # the native API: 0..1
        ({"temperature": -0.1}, "invalid_setting", "temperature"),
        ({"temperature": float("nan")}, "invalid_setting", "temperature"),
        ({"temperature": "hot"}, "invalid_setting", "temperature"),
        ({"top_p": 1.01}, "invalid_setting", "top_p"),
    ],
)
def test_requests_outside_the_policy_are_refused(team, member, restricted, requested, code, field):
    with pytest.raises(PolicyError) as caught:
        effective_settings(member, team, requested)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert caught.value.message and str(caught.value) == caught.value.message


@pytest.mark.parametrize("model", ["x" * 100_000, ["x" * 1000] * 100, {"name": "y" * 100_000}])
def test_a_refused_model_is_quoted_short(team, member, restricted, model):
    """The refusal goes back to the sender: it names what was asked for, not all of it."""
    with pytest.raises(PolicyError) as caught:
        effective_settings(member, team, {"model": model})
    assert caught.value.code == "model_not_allowed"
    assert len(caught.value.message) < 300


def test_the_openai_protocol_allows_temperature_up_to_2(team, member, settings):
    settings.LLAMA_API_PROTOCOL = "openai"
    assert effective_settings(member, team, {"temperature": 1.7})["temperature"] == 1.7
    settings.LLAMA_API_PROTOCOL = "llama"
    with pytest.raises(PolicyError):
        effective_settings(member, team, {"temperature": 1.7})


def test_max_tokens_also_stays_under_the_models_own_limit(team, member):
    with pytest.raises(PolicyError, match="16384"):
        effective_settings(member, team, {"model": SMALL, "max_tokens": 20_000})


def test_max_tokens_stays_within_the_window_the_operator_gave_a_model(team, member, settings):
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["qwen2.5:32b"]
    settings.LLAMA_MODEL_CONTEXT = {"qwen2.5:32b": 32_768}
    with pytest.raises(PolicyError, match="between 1 and 32768"):
        effective_settings(member, team, {"model": "qwen2.5:32b", "max_tokens": 40_000})
    asked = effective_settings(member, team, {"model": "qwen2.5:32b", "max_tokens": 32_768})
    assert asked["max_tokens"] == 32_768


def test_max_tokens_stays_within_the_window_the_site_assumes_for_an_unknown_model(
    team, member, settings
):
    """A local model the operator gave no window is read as 8,192 tokens: a longer answer
    than that is one its server refuses to write."""
    settings.LLAMA_DEFAULT_MODEL = "my-local-model"
    settings.LLAMA_MODELS = ["my-local-model"]
    with pytest.raises(PolicyError, match="between 1 and 8192"):
        effective_settings(member, team, {"model": "my-local-model", "max_tokens": 20_000})
    asked = effective_settings(member, team, {"model": "my-local-model", "max_tokens": 8192})
    assert asked["max_tokens"] == 8192
    settings.LLAMA_MODEL_CONTEXT = {"my-local-model": 65_536}
    asked = effective_settings(member, team, {"model": "my-local-model", "max_tokens": 20_000})
    assert asked["max_tokens"] == 20_000


def test_validate_settings_checks_only_what_is_given(team, restricted):
    assert validate_settings(team, {"model": None, "temperature": 0.2}) == {
        "model": None,
        "temperature": 0.2,
    }
    with pytest.raises(PolicyError) as caught:
        validate_settings(team, {"model": MAVERICK})
    assert caught.value.field == "model"


def test_allow_list_entries_the_site_does_not_offer_are_ignored(team):
    TeamPolicy.objects.create(team=team, allowed_models=["made-up-model"])
    assert allowed_models(team) == policy.site_models()


def test_an_allow_list_holds_only_models_the_operator_lists(team, settings):
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["qwen2.5:32b", "llama3.1:8b"]
    # Saved while the site offered the Llama API's models: the team gets the site's list.
    TeamPolicy.objects.create(team=team, allowed_models=[SCOUT, "llama3.1:8b"])
    assert allowed_models(team) == ["llama3.1:8b"]
    TeamPolicy.objects.filter(team=team).update(allowed_models=[SCOUT])
    assert allowed_models(team) == ["qwen2.5:32b", "llama3.1:8b"]


def test_team_and_user_default_helpers(team, member, restricted):
    assert policy.team_defaults(team) == {"model": SMALL, "temperature": 0.3}
    assert user_defaults(member) == {}
    assert policy.site_defaults()["max_tokens"] == 2048


# The policy page.


def policy_url(team) -> str:
    return reverse("teams:policy", args=[team.pk])


def test_owner_sets_the_policy_and_it_is_audited(owner_client, team, owner):
    data = {
        "allowed_models": [SCOUT, SMALL],
        "default_model": SCOUT,
        "default_temperature": "0.4",
        "default_max_tokens": "800",
        "max_tokens_limit": "1200",
        "monthly_token_budget": "100000",
        "rate_limit_per_minute": "5",
    }
    response = owner_client.post(policy_url(team), data)
    assert response.status_code == 302
    stored = TeamPolicy.objects.get(team=team)
    assert stored.allowed_models == [SCOUT, SMALL] and stored.default_model == SCOUT
    assert (stored.max_tokens_limit, stored.monthly_token_budget) == (1200, 100_000)
    assert stored.rate_limit_per_minute == 5 and stored.default_top_p is None
    event = AuditEvent.objects.get(action="policy.update")
    assert event.details["changes"]["max_tokens_limit"] == [None, 1200]
    page = owner_client.get(policy_url(team))
    assert b'value="1200"' in page.content


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"allowed_models": ["gpt-4"]}, "allowed_models"),
        ({"allowed_models": [SMALL], "default_model": SCOUT}, "default_model"),
        ({"default_temperature": "1.5"}, "default_temperature"),
        ({"default_top_p": "2"}, "default_top_p"),
        ({"default_max_tokens": "900", "max_tokens_limit": "500"}, "default_max_tokens"),
        ({"max_tokens_limit": "0"}, "max_tokens_limit"),
        ({"monthly_token_budget": "-5"}, "monthly_token_budget"),
        ({"rate_limit_per_minute": "lots"}, "rate_limit_per_minute"),
    ],
)
def test_bad_policies_are_form_errors_and_change_nothing(
    admin_client, team, admin_member, data, field
):
    response = admin_client.post(policy_url(team), data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not TeamPolicy.objects.filter(team=team).exists()
    assert not AuditEvent.objects.exists()


def test_a_default_max_tokens_the_site_default_model_cannot_write_is_refused(
    owner_client, team, settings
):
    """No default model picked: new chats use the site's default, and a default max tokens
    over what it writes would be saved and never apply."""
    settings.LLAMA_DEFAULT_MODEL = MAVERICK
    response = owner_client.post(policy_url(team), {"default_max_tokens": "20000"})
    assert response.context["form"].errors["default_max_tokens"] == [
        f"{MAVERICK} answers at most 16384 tokens."
    ]
    assert not TeamPolicy.objects.filter(team=team).exists()


def test_a_default_max_tokens_over_the_own_servers_model_window_is_refused(
    owner_client, team, team_server
):
    """A model of the team's own server reads 8,192 tokens unless the operator says otherwise:
    the first model listed is the one new chats use when no default is picked."""
    for data in (
        {"allowed_models": "llama3.1:8b", "default_max_tokens": "10000"},
        {
            "allowed_models": "llama3.1:8b",
            "default_model": "llama3.1:8b",
            "default_max_tokens": "10000",
        },
    ):
        response = owner_client.post(policy_url(team), data)
        assert response.context["form"].errors["default_max_tokens"] == [
            "llama3.1:8b answers at most 8192 tokens."
        ]
    assert not TeamPolicy.objects.filter(team=team).exists()


@pytest.mark.parametrize("value", ["1.5", "5"])
def test_a_temperature_over_the_providers_range_names_that_range(owner_client, team, value):
    """One message whatever the value: before, 5 was told "at most 2" and then 1.5 "0 to 1"."""
    response = owner_client.post(policy_url(team), {"default_temperature": value})
    assert response.context["form"].errors["default_temperature"] == [
        "This provider accepts 0 to 1."
    ]
    assert 'max="1"' in response.content.decode()


def test_the_policy_page_offers_the_models_the_operator_lists(owner_client, team, settings):
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["qwen2.5:32b", "llama3.1:8b"]
    response = owner_client.get(policy_url(team))
    page = response.content.decode()
    assert 'value="llama3.1:8b"' in page and SCOUT not in page
    assert "site_models" not in response.context  # the form's choices are the only list shown
    response = owner_client.post(policy_url(team), {"allowed_models": [SCOUT]})
    assert "allowed_models" in response.context["form"].errors
    response = owner_client.post(policy_url(team), {"default_model": SCOUT})
    assert "default_model" in response.context["form"].errors
    assert not TeamPolicy.objects.filter(team=team).exists()
    owner_client.post(policy_url(team), {"allowed_models": ["llama3.1:8b"]})
    assert TeamPolicy.objects.get(team=team).allowed_models == ["llama3.1:8b"]


def test_a_model_ticked_twice_is_stored_once(owner_client, team):
    owner_client.post(policy_url(team), {"allowed_models": [SMALL, SCOUT, SMALL]})
    assert TeamPolicy.objects.get(team=team).allowed_models == [SMALL, SCOUT]


def test_a_team_server_model_id_with_a_control_character_is_a_form_error(owner_client, team, owner):
    actions.set_provider(
        owner, team, base_url="https://9.9.9.8/v1", protocol="openai", api_key="k-123"
    )
    response = owner_client.post(policy_url(team), {"allowed_models": "qwen\nmis\x01tral"})
    assert response.status_code == 400
    assert "allowed_models" in response.context["form"].errors
    assert not TeamPolicy.objects.filter(team=team).exists()


def test_saving_an_unchanged_policy_writes_no_audit_event(owner_client, team, owner):
    owner_client.post(policy_url(team), {"rate_limit_per_minute": "3"})
    owner_client.post(policy_url(team), {"rate_limit_per_minute": "3"})
    assert AuditEvent.objects.filter(action="policy.update").count() == 1


def test_a_save_from_a_policy_page_read_before_another_admins_change_saves_nothing(
    owner_client, admin_member, team
):
    """Another admin set a monthly budget while this page was open: saving the page (its
    budget field empty, as it was read) must not silently lift the budget. Nothing is saved
    and the page says so; saving again, once seen, goes through."""
    page = owner_client.get(policy_url(team))
    form = page.context["form"]
    shown = {name: form[name].value() for name in form.fields}
    actions.set_policy(admin_member, team, {"monthly_token_budget": 50_000})
    typed = {k: v for k, v in shown.items() if v not in (None, "", [], False)}
    typed["rate_limit_per_minute"] = "5"
    response = owner_client.post(policy_url(team), typed)
    assert response.status_code == 400
    assert b"changed meanwhile" in response.content
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.monthly_token_budget, stored.rate_limit_per_minute) == (50_000, None)
    again = {"seen": response.context["form"]["seen"].value()}
    assert owner_client.post(policy_url(team), {**typed, **again}).status_code == 302
    assert TeamPolicy.objects.get(team=team).rate_limit_per_minute == 5


def test_the_overview_writes_the_limits_with_thousands_separated(team, member_client):
    TeamPolicy.objects.create(team=team, monthly_token_budget=5_000_000, max_tokens_limit=16384)
    page = member_client.get(reverse("teams:detail", args=[team.pk]))
    assert b"5,000,000 tokens" in page.content and b"16,384 tokens" in page.content


def test_the_overview_tells_members_of_their_own_monthly_limit(team, member_client):
    """With no team budget it said "Monthly budget: none", though each person is refused at
    their own limit."""
    TeamPolicy.objects.create(team=team, member_monthly_token_budget=200_000)
    page = member_client.get(reverse("teams:detail", args=[team.pk])).content.decode()
    assert "Monthly budget per person</dt><dd>200,000 tokens" in page
