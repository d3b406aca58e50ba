import logging
from datetime import timedelta
from functools import wraps
from ipaddress import ip_address, ip_network
from urllib.parse import urlsplit

from axes.helpers import cleanse_parameters, get_client_parameters
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.forms.utils import ErrorDict
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django.views.generic import FormView

from chatapp.accounts import actions, guesses
from chatapp.accounts.forms import (
    ApiKeyForm,
    ChatSettingsForm,
    ConfirmSignupForm,
    DeleteAccountForm,
    SignupForm,
)
from chatapp.accounts.models import PendingSignup, UserSettings
from chatapp.accounts.signup import (
    FIRST_ACCOUNT_NOTICE,
    address_proof_needed,
    invitation_in,
    invitation_notice,
    signup_notice,
    unconfirmed_signups,
)
from chatapp.core import actions as core_actions
from chatapp.core.links import absolute_url, site_root
from chatapp.core.logs import loggable_path
from chatapp.core.permissions import is_site_admin
from chatapp.core.redirects import safe_next
from chatapp.core.requests import AuthenticatedHttpRequest
from chatapp.core.words import counted
from chatapp.teams import actions as team_actions
from chatapp.teams import api_keys, budgets
from chatapp.teams.models import Invitation
from chatapp.teams.policy import SETTING_NAMES, retention_of
from chatapp.teams.services import current_team, switch_team

log = logging.getLogger(__name__)

# The key forms (their `once` field) that made a key in this session, and the key each made.
KEY_FORMS_SESSION_KEY = "api_key_forms"
KEY_FORMS_KEPT = 20


# One reset mail an address per this long, however often the form is sent.
RESET_MAIL_PAUSE = timedelta(minutes=5)


def sign_in_options() -> dict:
    """What the login page offers: the password form, the provider's button, or both."""
    return {
        "local_passwords": settings.LOCAL_PASSWORDS,
        "password_reset": password_reset_offered(),
        "sso_label": settings.OIDC_BUTTON_LABEL if settings.OIDC_ENABLED else "",
    }


def password_reset_offered() -> bool:
    """A forgotten password is reset by email where people sign in with passwords and the
    site can send mail (EMAIL_URL); elsewhere a site admin sets a new one in /admin/."""
    return settings.LOCAL_PASSWORDS and bool(settings.EMAIL_URL)


def when_passwords_on(view):
    """A page about the account's own password: none while passwords are off (the provider
    only), where no password the account may have would sign anyone in."""

    @wraps(view)
    def on(request, *args, **kwargs):
        if not settings.LOCAL_PASSWORDS:
            raise Http404("Password sign-in is turned off: people sign in through the provider")
        return view(request, *args, **kwargs)

    return on


def when_reset_offered(view):
    @wraps(view)
    def offered(request, *args, **kwargs):
        if not password_reset_offered():
            raise Http404("Passwords are not reset by email here: a site admin sets a new one")
        return view(request, *args, **kwargs)

    return offered


class PasswordResetView(auth_views.PasswordResetView):
    """Asks for an address and mails a one-time link to the accounts with it (active, with a
    password). The page after it reads the same whether or not an account has the address."""

    http_method_names = ["get", "post"]
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extra_email_context = {"valid_days": reset_link_days()}

    def form_valid(self, form):
        # The form cannot be used to flood someone's inbox: one mail an address a while.
        address = form.cleaned_data["email"]
        if not core_actions.address_mail_due("password_reset", address, RESET_MAIL_PAUSE):
            return redirect(self.get_success_url())
        self.extra_email_context["site_root"] = site_root(self.request)
        return super().form_valid(form)


def reset_link_days() -> int:
    return settings.PASSWORD_RESET_TIMEOUT // (24 * 3600)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "valid_days": reset_link_days()}


class AuditsOwnPassword(FormView):
    """A password the user sets themselves is in the site's audit trail, saved with it."""

    how: str  # a key of actions.OWN_PASSWORD
    http_method_names = ["get", "post"]

    def form_valid(self, form):
        with transaction.atomic():
            response = super().form_valid(form)
            actions.audit_own_password(form.user, self.how)
        return response


class PasswordResetConfirmView(AuditsOwnPassword, auth_views.PasswordResetConfirmView):
    how = "reset"
    success_url = reverse_lazy("password_reset_complete")

    def get_user(self, uidb64):
        # A link mailed before the account was deactivated is no longer valid: it sets nothing.
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None


class PasswordChangeView(AuditsOwnPassword, auth_views.PasswordChangeView):
    how = "change"
    success_url = reverse_lazy("password_change_done")

    def post(self, request, *args, **kwargs):
        if not guesses.may_guess(request, request.user):
            form = self.get_form()
            errors = form.error_class([guesses.too_many_message()])
            form._errors = ErrorDict({"old_password": errors})  # nothing else is checked
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        if form.has_error("old_password", "password_incorrect"):
            guesses.wrong_guess(self.request, self.request.user)
        return super().form_invalid(form)


class LoginView(auth_views.LoginView):
    http_method_names = ["get", "post"]  # Django's FormView would treat a PUT as a POST
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = {**super().get_context_data(**kwargs), **sign_in_options()}
        invitation = invitation_in(context.get("next") or "")
        context["invitation"] = invitation_notice(invitation, "login")
        return context

    def get_redirect_url(self):
        # This page as next would send a signed-in person round in a loop: the default instead.
        url = super().get_redirect_url()
        return "" if urlsplit(url).path == self.request.path else url

    def post(self, request, *args, **kwargs):
        if not settings.LOCAL_PASSWORDS:
            form = self.get_form_class()(request)
            message = f"Password sign-in is turned off here: use {settings.OIDC_BUTTON_LABEL}."
            form._errors = ErrorDict({"__all__": form.error_class([message])})
            return self.render_to_response(self.get_context_data(form=form), status=403)
        return super().post(request, *args, **kwargs)


def _admin_password_change(request):
    """The admin site's own page, as Django's `admin.site.password_change` makes it, through
    the view above: the wrong current passwords count, and the change is in the audit trail."""
    request.current_app = admin.site.name
    return PasswordChangeView.as_view(
        form_class=AdminPasswordChangeForm,
        success_url=reverse("admin:password_change_done"),
        extra_context=admin.site.each_context(request),
    )(request)


admin_password_change = when_passwords_on(admin.site.admin_view(_admin_password_change))


def admin_login(request):
    """/admin/login/: Django's own form while passwords are on, else our sign-in page; and
    for someone signed in whom the admin site refused, a refusal (our sign-in page would send
    them straight back to the admin site, which sends them here)."""
    if settings.LOCAL_PASSWORDS:
        return admin.site.login(request)
    if admin.site.has_permission(request):
        return redirect(safe_next(request, "/admin/"))
    if request.user.is_authenticated:
        raise PermissionDenied("The admin site is for site admins")
    return redirect_to_login(safe_next(request, "/admin/"))


@require_http_methods(["GET", "POST"])
def signup(request):
    if not settings.LOCAL_PASSWORDS:
        raise Http404("Sign-up is turned off: people sign in through the identity provider")
    if request.user.is_authenticated:
        return redirect(safe_next(request))
    next_url = safe_next(request, "")
    invitation = invitation_in(next_url)
    if request.method == "POST":
        with transaction.atomic():
            response = _signup_post(request, invitation, next_url)
            if response.status_code != 302:
                transaction.set_rollback(True)  # nothing changes, unconfirmed signups neither
            return response
    return _signup_page(request, SignupForm(invitation=invitation), invitation, next_url, 200)


def _signup_post(request, invitation: Invitation | None, next_url: str) -> HttpResponse:
    # An address, or a name, is an account's once the address is proved: a signup that was
    # never confirmed gives way to the next with its address, and to anyone once its link
    # has expired. The link mailed last confirms the account, for whoever signed up.
    try:
        address = forms.EmailField().clean(request.POST.get("email", ""))
    except ValidationError:
        address = ""  # the form says what is wrong with it
    expired = timezone.now() - timedelta(seconds=SIGNUP_LINK_MAX_AGE)
    held = Q(email__iexact=address) if address else Q()
    unconfirmed_signups().filter(held | Q(date_joined__lt=expired)).delete()
    form = SignupForm(request.POST, invitation=invitation)
    status = 200
    proof_by_mail = form.is_valid() and address_proof_needed(invitation)
    if proof_by_mail and not _signup_mail_due(request, form.cleaned_data["email"]):
        form.add_error(
            None,
            f"A confirmation link was mailed to {form.cleaned_data['email']} a few minutes"
            " ago: open it to sign in (look in the spam folder too), or sign up again"
            f" in {counted(SIGNUP_MAIL_MINUTES, 'minute')} for a new one.",
        )
        status = 429
    elif proof_by_mail:
        try:
            return _signup_to_confirm(request, form)
        except IntegrityError:
            _taken_meanwhile(form)
        except OSError as exc:  # smtplib's errors are OSErrors too; the account went back
            log.warning("Could not mail a signup confirmation: %s", type(exc).__name__)
            form.add_error(
                None,
                "The confirmation email could not be sent: nothing was saved. Try again in"
                " a while, or ask a team admin for an invitation.",
            )
            status = 503
    if form.is_valid():  # not after the mail above failed: that added an error
        try:
            user, membership = _create_account(form, invitation)
        except IntegrityError:
            _taken_meanwhile(form)
        except team_actions.InvitationError as error:  # the link was used meanwhile
            form.add_error(None, error.message)
            form.refused = True
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            if is_site_admin(user):
                messages.info(request, FIRST_ACCOUNT_NOTICE)
            if membership is None:
                return redirect(safe_next(request))
            switch_team(request, membership.team)
            messages.success(request, f"Welcome to {membership.team.name}.")
            return redirect("teams:detail", membership.team_id)
    status = 403 if form.refused else status
    return _signup_page(request, form, invitation, next_url, status)


def _taken_meanwhile(form: SignupForm) -> None:
    """Another account took the name or the address after the form checked them (the
    database's unique indexes refused the insert): say which, as when it was taken before."""
    email = form.cleaned_data.get("email", "")
    if email and get_user_model().objects.filter(email__iexact=email).exists():
        form.add_error("email", "An account with this email already exists.")
    else:
        form.add_error("username", "A user with that username already exists.")


def _signup_page(request, form, invitation, next_url: str, status: int) -> HttpResponse:
    context = {
        "form": form,
        "next": next_url,
        "notice": signup_notice(invitation),
        "invitation": invitation_notice(invitation, "signup"),
    }
    return render(request, "registration/signup.html", context, status=status)


# One confirmation link an address per this long from one network: a signup asked meanwhile
# changes nothing. Per network, as a pause per address alone would let a stranger keep the
# address's owner from signing up by asking for it again whenever the pause ends.
SIGNUP_MAIL_MINUTES = 5
SIGNUP_MAIL_PAUSE = timedelta(minutes=SIGNUP_MAIL_MINUTES)


def _signup_mail_due(request: HttpRequest, address: str) -> bool:
    return core_actions.address_mail_due(
        "signup", address, SIGNUP_MAIL_PAUSE, asked_from=_client_network(request)
    )


def _client_network(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR") or ""
    try:
        client = ip_address(remote)
    except ValueError:  # not over IP (a Unix socket): the peer as the server names it
        return remote
    # An IPv6 client holds a /64 at least: each of its addresses is the same sender.
    return str(ip_network(f"{client}/{64 if client.version == 6 else 32}", strict=False))


SIGNUP_SALT = "chatapp.accounts.signup-address"
SIGNUP_LINK_MAX_AGE = 3 * 24 * 3600
# The signups this browser made: their links sign in at once here, elsewhere after the password.
SIGNUPS_SESSION_KEY = "signups_to_confirm"
SIGNUPS_KEPT = 5
# Wrong passwords on one signup's confirmation page before the signup is ended.
SIGNUP_WRONG_PASSWORDS = 5


def _signup_to_confirm(request, form: SignupForm) -> HttpResponse:
    """An account admitted by its address's domain: made inactive, and a link mailed to the
    address activates it (anyone can type an address at the company's domain)."""
    with transaction.atomic():
        user = form.save(commit=False)
        user.is_active = False
        user.save()
        PendingSignup.objects.create(user=user)
        value = {"u": user.pk, "e": user.email}
        path = reverse("signup_confirm", args=[signing.dumps(value, salt=SIGNUP_SALT)])
        send_mail(
            "Confirm your email to use Llama team chat",
            f"Someone signed up as {user.get_username()} with this address. Open this link to"
            f" confirm it and sign in (valid for 3 days):\n{absolute_url(request, path)}\n\n"
            "In the browser you signed up in it signs you in at once; anywhere else (another"
            " browser, your phone) it asks for the password you chose.\n\n"
            "If that was not you, ignore this email: without that password the link confirms"
            " nothing.",
            None,
            [user.email],
        )
    made = request.session.get(SIGNUPS_SESSION_KEY, [])
    request.session[SIGNUPS_SESSION_KEY] = [*made, user.pk][-SIGNUPS_KEPT:]
    messages.info(request, f"Open the link mailed to {user.email} to confirm it and sign in.")
    return redirect("login")


@require_http_methods(["GET", "POST"])
def signup_confirm(request, signature: str) -> HttpResponse:
    """The link mailed to a signup's address. It proves the address, not who chose the
    password: it signs in the browser that signed up, anyone else once they type the password
    (else a stranger who typed someone's address would get the account its owner confirmed)."""
    if not settings.LOCAL_PASSWORDS:
        raise Http404("Sign-up is turned off: people sign in through the identity provider")
    user = _signup_of_link(signature)
    if user is None:
        messages.error(request, "This confirmation link is not valid (or has expired).")
        return redirect("login")
    if user.pk in request.session.get(SIGNUPS_SESSION_KEY, []):
        return _confirmed(request, user)
    form = ConfirmSignupForm(request.POST if request.method == "POST" else None, user=user)
    if request.method == "GET":
        return _confirm_page(request, form, user, 200)
    if form.is_valid():
        return _confirmed(request, user)
    if actions.count_wrong_signup_password(user, SIGNUP_WRONG_PASSWORDS):
        messages.error(
            request,
            f"The password was wrong {SIGNUP_WRONG_PASSWORDS} times, so this signup was ended"
            " and its link no longer works: sign up again for a new one.",
        )
        return redirect("signup")
    return _confirm_page(request, form, user, 400)


def _signup_of_link(signature: str):
    """The signup a confirmation link names, while it waits for its confirmation."""
    try:
        value = signing.loads(signature, salt=SIGNUP_SALT, max_age=SIGNUP_LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("u"), int)):
        return None
    # Only a signup never confirmed: not an account a site admin has since deactivated.
    unconfirmed = get_user_model().objects.filter(
        is_active=False, last_login__isnull=True, pending_signup__isnull=False
    )
    return unconfirmed.filter(pk=value["u"], email=value.get("e")).first()


def _confirm_page(request, form: ConfirmSignupForm, user, status: int) -> HttpResponse:
    context = {"form": form, "pending": user, "valid_days": SIGNUP_LINK_MAX_AGE // (24 * 3600)}
    return render(request, "registration/signup_confirm.html", context, status=status)


def _confirmed(request, user) -> HttpResponse:
    actions.confirm_signup(user)
    made = request.session.get(SIGNUPS_SESSION_KEY, [])
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SIGNUPS_SESSION_KEY] = [pk for pk in made if pk != user.pk]
    return redirect("home")


def throttled_username(request: HttpRequest, credentials: dict | None) -> str | None:
    """The username django-axes counts failures for, cut to its column's 255 characters (more
    than any account's): Django's login forms do not enforce the username's max_length."""
    source = credentials or getattr(request, "data", request.POST)
    username = source.get("username")
    return username[:255] if isinstance(username, str) else username


def throttled_client(
    username: str, ip_address: str, user_agent: str, path_info: str, request: HttpRequest
) -> str:
    """How django-axes names a login in its log lines: as it does itself (the lockout's
    parameters, masked), with the path as the access line writes it, as a signup's
    confirmation link signs in and its signature is a credential."""
    parameters: dict = {}
    for parameter in get_client_parameters(username, ip_address, user_agent, request):
        parameters.update(parameter)
    named = {**cleanse_parameters(parameters), "path_info": loggable_path(request)}
    return "{" + ", ".join(f'{key}: "{value}"' for key, value in named.items()) + "}"


def _create_account(form: SignupForm, invitation: Invitation | None):
    """The new account, and its membership when it came through a shareable link: joining at
    once uses the link up, so that it admits one person, not any number of accounts."""
    with transaction.atomic():
        user = form.save()
        if invitation is None or invitation.email:
            return user, None  # an address-bound invitation needs proof of the address first
        membership, _ = team_actions.accept_invitation(user, invitation.token)
    return user, membership


def login_locked_out(request: HttpRequest, response=None, credentials=None) -> HttpResponse:
    """The login page again, saying why the login was refused (django-axes' lockout hook)."""
    message = (
        "Too many failed logins for this account from your address:"
        f" wait {guesses.lockout_wait()} and try again, or ask an admin to reset your password."
    )
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    errors = ErrorDict({"__all__": form.error_class([message], error_class="nonfield")})
    form._errors = errors  # type: ignore[attr-defined]  # set as Django's own clean() does
    context = {"form": form, "next": safe_next(request, ""), **sign_in_options()}
    return render(request, "registration/login.html", context, status=429)


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Model, temperature, max tokens and top_p: only what the current team's policy allows."""
    team = current_team(request)
    if request.method == "POST" and "reset" in request.POST:
        return reset_settings(request)
    form = ChatSettingsForm(request.POST or None, team=team, initial=_saved_defaults(request.user))
    if request.method == "POST" and form.is_valid():
        actions.save_defaults(request.user, form.stored_values())
        messages.success(request, "Settings saved.")
        return redirect("settings")
    return _settings(request, form, team)


def _settings(request, form, team, key_form=None, new_key: str = "", status: int = 200):
    context = {
        "form": form,
        "current_team": team,
        "fallback": form.fallback,
        "keys": api_keys.keys_of(request.user),
        # A key of a team the person left sends its requests to their first team instead.
        "member_of": set(request.user.memberships.values_list("team_id", flat=True)),
        "key_form": key_form or ApiKeyForm(user=request.user),
        "new_key": new_key,
        "meters": budgets.meters(team, request.user),
        # Which teams delete old conversations, and which keep them all under legal hold (a
        # member who tries to delete one is told so anyway).
        "retention": retention_of(request.user),
        "budget_notices": budgets.notices_for_owner(request.user, team),
        "local_passwords": settings.LOCAL_PASSWORDS,
        # Without a password (or with passwords off), either the identity provider signs the
        # person in or nothing does yet (an account made by import_conversations --create-missing).
        "single_sign_on": (
            not (settings.LOCAL_PASSWORDS and request.user.has_usable_password())
            and request.user.oidc_identities.exists()
        ),
    }
    return render(request, "accounts/settings.html", context, status=status)


@login_required
@require_POST
def key_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Make a key and show it on this one page: it is never shown again."""
    team = current_team(request)
    made = request.session.get(KEY_FORMS_SESSION_KEY, {})
    once = request.POST.get("key-once", "")
    if once and once in made:
        return _key_already_made(request, made[once])
    key_form = ApiKeyForm(request.POST, user=request.user)
    form = ChatSettingsForm(None, team=team, initial=_saved_defaults(request.user))
    if not key_form.is_valid():
        return _settings(request, form, team, key_form=key_form, status=400)
    key, secret = team_actions.create_api_key(
        request.user, team, key_form.cleaned_data["name"], key_form.cleaned_data["expires"]
    )
    if once:
        made[once] = key.pk
        request.session[KEY_FORMS_SESSION_KEY] = dict(list(made.items())[-KEY_FORMS_KEPT:])
    response = _settings(request, form, team, new_key=secret, status=201)
    response["Cache-Control"] = "no-store"  # the key must not stay in any cache
    return response


def _key_already_made(request, key_id: int) -> HttpResponse:
    """The form that made a key, sent again: point at that key rather than make a second."""
    key = api_keys.keys_of(request.user).filter(pk=key_id).first()
    if key is None:  # revoked since
        messages.info(request, "This form already made a key, since revoked: fill it in again.")
    else:
        messages.info(
            request,
            f"This form already made the key {key.name} ({key.prefix}…), and a key is shown"
            " only once. If you did not copy it, revoke it and create another.",
        )
    return redirect("settings")


@login_required
@require_POST
def key_revoke(request: AuthenticatedHttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(api_keys.keys_of(request.user), pk=key_id)
    team_actions.revoke_api_key(request.user, key)
    messages.success(request, f"The key {key.name} ({key.prefix}…) was revoked.")
    return redirect("settings")


def _saved_defaults(user) -> dict:
    stored = UserSettings.objects.filter(user=user).first()
    return {name: getattr(stored, name) for name in SETTING_NAMES} if stored else {}


def reset_settings(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Clear the user's own defaults, so the team's defaults apply again."""
    actions.reset_defaults(request.user)
    messages.success(request, "Your settings were reset to the team defaults.")
    return redirect("settings")


@login_required
@require_http_methods(["GET", "POST"])
def delete_account(request: AuthenticatedHttpRequest) -> HttpResponse:
    """What deleting one's own account deletes and keeps; confirmed with the password (or the
    username, where no password of theirs signs in) it deletes it and signs them out."""
    user = request.user
    by_password = settings.LOCAL_PASSWORDS and user.has_usable_password()
    form = DeleteAccountForm(request.POST or None, user=user, by_password=by_password)
    refusal = team_actions.own_deletion_refusal(user)
    status = 200
    if request.method == "POST":
        status = 400
        if by_password and not guesses.may_guess(request, user):
            errors = form.error_class([guesses.too_many_message()])
            form._errors = ErrorDict({"confirmation": errors})  # type: ignore[attr-defined]
            status = 429
        elif not refusal and form.is_valid():
            try:
                actions.delete_own_account(user)
            except team_actions.ActionError as error:  # a team changed since the check above
                refusal = error.message
            else:
                logout(request)
                messages.success(request, "Your account and everything in it were deleted.")
                return redirect("login")
        elif not refusal and form.has_error("confirmation", "wrong_password"):
            guesses.wrong_guess(request, user)
        if refusal:
            status = 409
    context = {"form": form, "refusal": refusal, "by_password": by_password}
    return render(request, "accounts/delete_account.html", context, status=status)
