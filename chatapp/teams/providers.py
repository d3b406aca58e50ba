"""The Llama API client a team's requests go through: the site's provider or the team's own."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from django.conf import settings as django_settings

from chatapp.llm import LlamaClient, LlmValidationError, ProviderConfig
from chatapp.llm.errors import server_name
from chatapp.teams import crypto
from chatapp.teams.models import Team
from chatapp.teams.network import GuardedLlamaClient
from chatapp.teams.policy import PolicyError, TeamRules, team_provider

log = logging.getLogger(__name__)


def llama_client(team: Team, rules: TeamRules | None = None) -> LlamaClient:
    """A client for the provider the team's requests go to.

    A team URL is only ever used with the team's own key, through the network guard; a team
    key without a URL goes to the site's URL; otherwise the site's URL and key. The site's key
    is never sent anywhere but the site's URL.
    """
    provider = rules.provider if rules else team_provider(team)
    site_url = django_settings.LLAMA_API_BASE_URL
    site_protocol = django_settings.LLAMA_API_PROTOCOL
    if provider is None or not provider.has_key:
        site_fix = "check LLAMA_API_BASE_URL and LLAMA_API_KEY"
        with _unusable("The site's Llama API settings", site_fix):
            return LlamaClient(_config(site_url, django_settings.LLAMA_API_KEY, site_protocol))
    try:
        key = crypto.decrypt(provider.api_key_encrypted)
    except crypto.KeyUnreadable as exc:
        raise PolicyError("provider_key_unreadable", str(exc)) from None
    with _unusable(
        "The team's provider settings", "a team owner must correct them on the team's Provider page"
    ):
        if provider.base_url:
            config = _config(provider.base_url, key, provider.protocol)
            where = "the address on the team's Provider page"
            return GuardedLlamaClient(replace(config, address_set_in=where))
        return LlamaClient(_config(site_url, key, site_protocol))


def provider_name(team: Team) -> str:
    """The server the team's requests go to, as messages name it: "The Llama API", or
    "The model server at <host>" for an OpenAI-compatible one of the site's or the team's."""
    provider = team_provider(team)
    if provider is not None and provider.has_key and provider.base_url:
        return server_name(ProviderConfig(provider.base_url, "", provider.protocol))
    site = django_settings.LLAMA_API_BASE_URL
    return server_name(ProviderConfig(site, "", django_settings.LLAMA_API_PROTOCOL))


@contextmanager
def _unusable(what: str, fix: str) -> Iterator[None]:
    """A client that cannot be built is a provider error the user can act on."""
    try:
        yield
    except LlmValidationError as exc:
        message = f"{what} are not usable: the {exc.message}; {fix}."
        raise PolicyError("provider_invalid", message) from None
    except Exception:
        log.exception("Building a Llama API client failed")
        raise PolicyError("provider_invalid", f"{what} are not usable: {fix}.") from None


def _config(base_url: str, api_key: str, protocol: str) -> ProviderConfig:
    return ProviderConfig(
        base_url,
        api_key,
        protocol,
        max_attempts=django_settings.LLAMA_MAX_ATTEMPTS,
        **django_settings.LLAMA_TIMEOUTS,
    )
