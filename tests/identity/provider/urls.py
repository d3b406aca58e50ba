import hashlib
import json

from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import get_access_token_model
from oauth2_provider.views import TokenView, UserInfoView

from tests.identity.provider.validator import claims_of


def answering_as_told(view, body_claim: str, access_token_of):
    """The endpoint, except that a person whose claims set `body_claim` gets that text as the
    answer's body instead (valid JSON that is no object, say) after the real work is done."""
    real = view.as_view()

    @csrf_exempt  # as the real endpoints are: clients call them with no browser session
    def endpoint(request, *args, **kwargs):
        response = real(request, *args, **kwargs)
        if response.status_code != 200:
            return response
        checksum = hashlib.sha256(access_token_of(request, response).encode()).hexdigest()
        user = get_access_token_model().objects.get(token_checksum=checksum).user
        body = claims_of(user).get(body_claim)
        if body is None:
            return response
        return HttpResponse(body, content_type="application/json")

    return endpoint


def token_in_answer(request, response) -> str:
    return json.loads(response.content)["access_token"]


def token_in_request(request, response) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("o/token/", answering_as_told(TokenView, "_token_body", token_in_answer)),
    path("o/userinfo/", answering_as_told(UserInfoView, "_userinfo_body", token_in_request)),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
]
