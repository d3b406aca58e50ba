"""The JSON API's conventions, shared by every app's endpoints (built on django-ninja).

- Errors are `{"error": {"code", "message", "field"?}}` with a 4xx status: 400 for bad input
  (code `invalid` unless a rule names its own), 401 when logged out, 403 for a role that may
  not, 404 for anything that is not the user's, 405 (with Allow) for another method.
- Every answer is never_cache; every write must carry the CSRF token (X-CSRFToken), checked
  before anything else, so a write without it is refused whatever its address or method.
- Bodies are read inside the view, after the access check: another person's object is a 404
  whatever the body holds. Their schemas are documented in the OpenAPI document all the same.
- Text fields refuse NUL characters and lone surrogates, which no database stores as text.

Imports no app of the project: each app's api module builds on this one.
"""

import json
from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    RawPostDataException,
)
from django.http.multipartparser import MultiPartParserError
from django.urls import URLPattern, URLResolver
from django.utils.cache import add_never_cache_headers
from django.utils.http import parse_etags
from django.views.decorators.http import require_safe
from ninja import NinjaAPI, Router, Schema
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import SessionAuth
from ninja.utils import check_csrf
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from chatapp.core.text import composed, validate_one_line

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
# Largest id a path may name: the databases' bigint.
MAX_ID = 2**63 - 1
# Largest page number a list takes: far past any real list, and small enough that the row
# offset fits the databases' integers.
MAX_PAGE = 10**9
ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 412})


class ApiError(Exception):
    """A request the API refuses; `code` is stable, `message` tells the user what to do."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None) -> JsonResponse:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return JsonResponse({"error": error}, status=status)


# --- schemas -------------------------------------------------------------------------------


def _storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


# For every string a client sends: the databases cannot store NUL or lone surrogates as text.
# Put it after any StringConstraints: Annotated[str, StringConstraints(...), Storable].
Storable = AfterValidator(_storable_text)
Text = Annotated[str, Storable]


def _one_line_text(value: str) -> str:
    try:
        validate_one_line(value)
    except DjangoValidationError as error:
        raise ValueError(error.messages[0]) from None
    return value


# For a name others read: one line that reads as typed, as the forms' validate_one_line.
OneLine = AfterValidator(_one_line_text)
# For a name others read, last in its Annotated so that it runs first, before the length is
# checked: composed (NFC), as the forms' NameField, so lookalike spellings are one name.
Composed = BeforeValidator(lambda value: composed(value) if isinstance(value, str) else value)


def blank_is(default: Any) -> BeforeValidator:
    """For a query parameter: left blank (`?page=`, as a form sends an empty field) is left out."""
    return BeforeValidator(lambda value: default if value == "" else value)


class RequestBody(BaseModel):
    """A JSON body: exact types (no "1" for 1, no 1 for true) and no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorDetail(Schema):
    code: str
    message: str
    field: str | None = None


class ErrorOut(Schema):
    error: ErrorDetail


def responses(ok: dict[int, Any]) -> dict:
    """An operation's documented answers: its own, and the envelope for every refusal."""
    return {**ok, ERROR_STATUSES: ErrorOut}


Body = TypeVar("Body", bound=RequestBody)


def read_body(request: HttpRequest, schema: type[Body]) -> Body:
    try:
        body = request.body
    except RawPostDataException:
        # A POST sent as a multipart form: the CSRF check has read it for its token already.
        raise ApiError(
            400, "invalid", "The body must be a JSON object, sent as application/json."
        ) from None
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid", "The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid", "The body must be a JSON object.")
    try:
        return schema.model_validate(data)
    except PydanticValidationError as error:
        raise _invalid(error.errors()) from None


def documented_body(schema: type[RequestBody]) -> dict:
    """openapi_extra for an operation that reads `schema` with read_body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema.model_json_schema()}},
        }
    }


# Where django-ninja read a value from, first in each error's location: not a field.
LOCATION_WORDS = frozenset({"body", "query", "path", "form", "file", "header", "cookie"})


def _invalid(errors: Iterable[Mapping[str, Any]]) -> ApiError:
    """The first schema error as an ApiError. `field` is the body's own field, as the app's
    own checks name it; the message says where inside it: `data_patterns[0].pattern`."""
    first = next(iter(errors))
    location = [part for part in first["loc"] if part not in LOCATION_WORDS]
    field = next((part for part in location if isinstance(part, str)), None)
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location)
    where = where.removeprefix(".")
    if first["type"] == "extra_forbidden":
        return ApiError(400, "invalid", f"Unknown field: {where}.", field)
    if first["type"] == "missing":
        return ApiError(400, "invalid", f"{where} is required.", field)
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, "invalid", f"{where}: {message}." if where else f"{message}.", field)


def one_page(
    request: HttpRequest, rows: list, size: int, following: dict
) -> tuple[list, str | None]:
    """The rows a page shows, and the next page's address (its query: `following`) or None.
    `rows` was read one row past `size`: that row tells whether a next page exists."""
    if len(rows) <= size:
        return rows, None
    return rows[:size], request.path + "?" + urlencode(following)


# --- preconditions (If-Match) --------------------------------------------------------------


def etag(state: str) -> str:
    """The ETag header of an object whose edited fields read `state` (a state_token)."""
    return f'"{state}"'


def check_if_match(request: HttpRequest, state: str) -> bool:
    """412 when the request's If-Match names no current ETag (`*` matches any; a weak tag
    never does). True when it sent one: the write then checks `state` again as it saves."""
    header = request.headers.get("If-Match")
    if header is None:
        return False
    tags = parse_etags(header)
    if tags != ["*"] and etag(state) not in tags:
        raise precondition_failed()
    return True


def precondition_failed() -> ApiError:
    return ApiError(
        412,
        "precondition_failed",
        "It was changed (by someone else) since you read it: nothing was saved. Read it again"
        " for its current ETag, then send your change again.",
    )


# --- the API -------------------------------------------------------------------------------


class SessionUser(SessionAuth):
    """The logged-in user of the session. CSRF is checked before this, for every write."""

    def __init__(self) -> None:
        super().__init__(csrf=False)


UNREADABLE_BODY = "The request's body could not be read: send it well-formed and within the limits."
UNREADABLE_BODY_ERRORS = (
    MultiPartParserError,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)


def new_api(routers: Iterable[Router]) -> NinjaAPI:
    api = NinjaAPI(
        title="Llama team chat",
        version="1",
        description="The JSON API of the chat. Session auth; writes need the X-CSRFToken header.",
        auth=SessionUser(),
        urls_namespace="api",
        docs_url="/docs" if settings.DEBUG else None,
        docs_decorator=require_safe,  # the document (and the docs page) are read, never written
    )
    for router in routers:
        api.add_router("", router)
    api.add_exception_handler(ApiError, _refused)
    api.add_exception_handler(NinjaValidationError, _invalid_params)
    api.add_exception_handler(AuthenticationError, _not_authenticated)
    api.add_exception_handler(Http404, _not_found)
    api.add_exception_handler(PermissionDenied, _forbidden)
    # Met while ninja reads the body; with DEBUG off Django's handler400 answers them the same
    # way (chatapp/api.py), with DEBUG on ninja would answer a 500 with the traceback.
    for unreadable in UNREADABLE_BODY_ERRORS:
        api.add_exception_handler(unreadable, _unreadable_body)
    return api


# ninja hands each handler the exception it was registered for; typed `object` as ninja asks.
def _refused(request: HttpRequest, error: object) -> HttpResponse:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.code, error.message, error.field)


def _invalid_params(request: HttpRequest, error: object) -> HttpResponse:
    assert isinstance(error, NinjaValidationError)
    return _refused(request, _invalid(error.errors))


def _unreadable_body(request: HttpRequest, error: object) -> HttpResponse:
    return error_response(400, "invalid", UNREADABLE_BODY)


def _not_authenticated(request: HttpRequest, error: object) -> HttpResponse:
    return error_response(401, "not_authenticated", "Log in to use the API.")


def _not_found(request: HttpRequest, error: object) -> HttpResponse:
    return error_response(404, "not_found", "Not found: it does not exist or is not yours.")


def _forbidden(request: HttpRequest, error: object) -> HttpResponse:
    message = str(error) or "Your role does not allow this."
    return error_response(403, "forbidden", message)


def api_urls(api: NinjaAPI) -> list:
    """The API's URL patterns, each view behind the conventions in this module's docstring."""
    patterns, _, _ = api.urls
    return [_guard_pattern(pattern) for pattern in patterns]


def _guard_pattern(pattern: URLPattern | URLResolver):
    if isinstance(pattern, URLResolver):
        return URLResolver(
            pattern.pattern,
            [_guard_pattern(p) for p in pattern.url_patterns],
            pattern.default_kwargs,
            pattern.app_name,
            pattern.namespace,
        )
    return URLPattern(
        pattern.pattern, _guarded(pattern.callback), pattern.default_args, pattern.name
    )


def _guarded(view: Callable) -> Callable:
    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            response = error_response(
                403,
                "csrf_failed",
                "CSRF verification failed: send the csrftoken cookie's value in the"
                " X-CSRFToken header (reload the page if it is missing).",
            )
        else:
            response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = error_response(405, "method_not_allowed", f"Use {allowed} on this address.")
            response["Allow"] = allowed
        add_never_cache_headers(response)
        return response

    guarded.csrf_exempt = True  # type: ignore[attr-defined]  # checked above, before the method
    return guarded
