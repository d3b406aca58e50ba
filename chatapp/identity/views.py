"""Sign-in and sign-out through the OpenID Connect provider (mozilla-django-oidc's views,
with endpoints from discovery and failures shown on the login page instead of an error page)."""

import logging

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import BACKEND_SESSION_KEY
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from chatapp.identity.oidc import (
    ProviderUnavailable,
    callback_url,
    end_session_url,
    provider_metadata,
)

log = logging.getLogger(__name__)

OIDC_BACKEND = "chatapp.identity.backends.OIDCBackend"


def _require_enabled() -> None:
    if not settings.OIDC_ENABLED:
        raise Http404("Single sign-on is not configured")


def _unavailable(request: HttpRequest) -> HttpResponse:
    messages.error(
        request,
        f"{settings.OIDC_BUTTON_LABEL} is unavailable: the identity provider could not be"
        " reached. Try again in a minute, or tell your admin if it persists.",
    )
    return redirect("login")


class SignInStart(OIDCAuthenticationRequestView):
    """Redirects to the provider with state, nonce and a PKCE challenge kept in the session."""

    def __init__(self, *args, **kwargs):
        View.__init__(self, *args, **kwargs)  # the endpoint comes from discovery, below
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        _require_enabled()
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_metadata()["authorization_endpoint"]
        except ProviderUnavailable:
            return _unavailable(request)
        return super().get(request)

    def get_extra_params(self, request):
        return {"redirect_uri": callback_url(request)}  # at SITE_URL, as the token request


class SignInCallback(OIDCAuthenticationCallbackView):
    """The provider's redirect back: a wrong or used state, a bad token or a refused code all
    end on the login page with the same message and nobody signed in."""

    def get(self, request):
        _require_enabled()
        if request.GET.get("error"):
            # The provider's refusal, or a crafted link: that flow ends, but nobody is signed
            # out (the library would; signing out takes a POST with the CSRF token).
            if request.session.get("oidc_states", {}).pop(request.GET.get("state"), None):
                request.session.modified = True
            return self.login_failure()
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            log.warning("OpenID Connect callback refused: %s", exc)
            return self.login_failure()

    def login_failure(self):
        user = self.request.user
        if user.is_authenticated:
            # The callback again (a second click, the back button): the session signed in before.
            messages.info(
                self.request,
                f"{settings.OIDC_BUTTON_LABEL} did not complete;"
                f" you are still signed in as {user.get_username()}.",
            )
            return redirect(settings.LOGIN_REDIRECT_URL)
        messages.error(
            self.request,
            f"{settings.OIDC_BUTTON_LABEL} did not complete, so you are not signed in."
            " Start again from this page; ask your admin if it keeps failing.",
        )
        return redirect("login")


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """Ends this session (its chat sockets close, see chatapp.accounts.sockets); someone who
    signed in through the provider is offered its end-session page too."""
    provider_logout = ""
    if settings.OIDC_ENABLED and request.session.get(BACKEND_SESSION_KEY) == OIDC_BACKEND:
        provider_logout = end_session_url(request)
    auth.logout(request)
    if provider_logout:
        context = {"provider_logout_url": provider_logout}
        return render(request, "registration/logged_out.html", context)
    return redirect(settings.LOGOUT_REDIRECT_URL)
