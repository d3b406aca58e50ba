from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from chatapp.accounts.forms import ChatSettingsForm, SignupForm
from chatapp.accounts.models import UserSettings
from chatapp.teams.policy import SETTING_NAMES
from chatapp.teams.services import current_team


def safe_next(request, default: str = "/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def signup(request):
    if request.user.is_authenticated:
        return redirect(safe_next(request))
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(safe_next(request))
    return render(
        request, "registration/signup.html", {"form": form, "next": safe_next(request, "")}
    )


def login_locked_out(request: HttpRequest, response=None, credentials=None) -> HttpResponse:
    """The login page again, saying why the login was refused (django-axes' lockout hook)."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        "Too many failed logins for this account from your address:"
        f" wait {minutes} minutes and try again, or ask an admin to reset your password."
    )
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    form._errors = ErrorDict({"__all__": form.error_class([message], error_class="nonfield")})
    context = {"form": form, "next": safe_next(request, "")}
    return render(request, "registration/login.html", context, status=429)


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    """Model, temperature, max tokens and top_p: only what the current team's policy allows."""
    team = current_team(request)
    if request.method == "POST" and "reset" in request.POST:
        return reset_settings(request)
    stored = UserSettings.objects.filter(user=request.user).first()
    initial = {name: getattr(stored, name) for name in SETTING_NAMES} if stored else {}
    form = ChatSettingsForm(request.POST or None, team=team, initial=initial)
    if request.method == "POST" and form.is_valid():
        UserSettings.objects.update_or_create(user=request.user, defaults=form.stored_values())
        messages.success(request, "Settings saved.")
        return redirect("settings")
    context = {"form": form, "current_team": team, "fallback": form.fallback}
    return render(request, "accounts/settings.html", context)


def reset_settings(request: HttpRequest) -> HttpResponse:
    """Clear the user's own defaults, so the team's defaults apply again."""
    blank = {"model": "", **{name: None for name in SETTING_NAMES if name != "model"}}
    UserSettings.objects.filter(user=request.user).update(**blank)
    messages.success(request, "Your settings were reset to the team defaults.")
    return redirect("settings")
