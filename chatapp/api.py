"""The one JSON API of the project, served under /api/: every app's endpoints, one convention
(chatapp.core.api), and the OpenAPI document at /api/openapi.json.

Also the answers Django gives itself, before or around a view (an unknown URL, a body it cannot
parse, an unexpected error): JSON in the API's envelope under /api/, in OpenAI's under /v1/,
and Django's own pages everywhere else."""

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.utils.cache import add_never_cache_headers
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from chatapp.accounts.api import router as accounts_router
from chatapp.chat import openai_api
from chatapp.chat.api import router as chat_router
from chatapp.chat.completions import OpenAIError
from chatapp.chat.export_api import router as export_router
from chatapp.chat.share_api import router as share_router
from chatapp.core.api import UNREADABLE_BODY, error_response, new_api
from chatapp.teams.api import router as teams_router
from chatapp.tools.api import router as tools_router
from chatapp.uploads.api import router as uploads_router

api = new_api(
    [
        chat_router,
        share_router,
        export_router,
        uploads_router,
        accounts_router,
        teams_router,
        tools_router,
    ]
)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A body Django could not parse (a multipart form without its boundary, a part's headers
    over its limit) or one over DATA_UPLOAD_MAX_MEMORY_SIZE."""
    if request.path.startswith("/api/"):
        return _never_cached(error_response(400, "invalid", UNREADABLE_BODY))
    if request.path.startswith("/v1/"):
        error = OpenAIError(400, UNREADABLE_BODY, code="invalid_request")
        return openai_api.error_response(error)
    return defaults.bad_request(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        message = "Not found: it does not exist or is not yours."
        if not request.path.endswith("/") and _is_an_address(request.path_info + "/"):
            message += f" This API's addresses end with a slash: {request.path}/"
        return _never_cached(error_response(404, "not_found", message))
    if request.path.startswith("/v1/"):
        message = f"Invalid URL ({request.method} {request.path}): this API has /v1/models and"
        message += " /v1/chat/completions."
        return openai_api.error_response(OpenAIError(404, message, code="unknown_url"))
    return defaults.page_not_found(request, exception)


@csrf_exempt  # a POST to an unknown /v1/ address is told so, not refused for its CSRF token
def unknown_url(request: HttpRequest) -> HttpResponse:
    """Any other address under /api/ or /v1/ (the last URL patterns there): the JSON 404 in
    every mode. Without it, DEBUG answers with Django's HTML page, and APPEND_SLASH redirects
    a URL without its final slash, which turns a POST into a GET (or a 500 under DEBUG)."""
    return page_not_found(request, Http404())


def _is_an_address(path_info: str) -> bool:
    try:
        return resolve(path_info).func is not unknown_url
    except Resolver404:
        return False


def server_error(request: HttpRequest) -> HttpResponse:
    message = "Something went wrong on the server: try again."
    if request.path.startswith("/api/"):
        return _never_cached(error_response(500, "internal_error", message))
    if request.path.startswith("/v1/"):
        error = OpenAIError(500, message, kind="server_error", code="internal_error")
        return openai_api.error_response(error)
    return defaults.server_error(request)


def _never_cached(response: HttpResponse) -> HttpResponse:
    """As every answer of the API's own views is (chatapp.core.api)."""
    add_never_cache_headers(response)
    return response
