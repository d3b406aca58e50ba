"""`/api/settings/`: the user's own defaults for new conversations (GET, PUT)."""

from django.http import HttpRequest, JsonResponse

from chatapp.accounts.models import UserSettings
from chatapp.chat.api import ApiError, api_view, json_body, only_fields
from chatapp.teams import policy
from chatapp.teams.services import current_team

# "effective" is what GET returns besides the stored values; a client may send it back.
ACCEPTED_FIELDS = (*policy.SETTING_NAMES, "effective")


@api_view("GET", "PUT")
def user_settings(request: HttpRequest) -> JsonResponse:
    team = current_team(request)
    if request.method == "PUT":
        body = json_body(request)
        only_fields(body, ACCEPTED_FIELDS)
        values = {name: body.get(name) for name in policy.SETTING_NAMES}
        if values["model"] == "":
            values["model"] = None
        try:
            policy.effective_settings(request.user, team, values)
        except policy.PolicyError as error:
            raise ApiError(400, error.code, error.message, error.field) from None
        UserSettings.objects.update_or_create(user=request.user, defaults=_stored(values))
    return JsonResponse(settings_data(request.user, team))


def _stored(values: dict) -> dict:
    # A blank model is stored as "", the other fields as NULL: both mean "use the default".
    return {**values, "model": values["model"] or ""}


def settings_data(user, team) -> dict:
    stored = UserSettings.objects.filter(user=user).first()
    own = {name: getattr(stored, name) if stored else None for name in policy.SETTING_NAMES}
    own["model"] = own["model"] or None
    try:
        effective = policy.effective_settings(user, team)
    except policy.PolicyError:
        effective = None
    return {**own, "effective": effective}
