from django.contrib import admin
from django.urls import include, path, re_path

from chatapp.accounts import views as accounts_views
from chatapp.api import api, unknown_url
from chatapp.chat import openai_api
from chatapp.chat import views as chat_views
from chatapp.core import views as core_views
from chatapp.core.api import api_urls
from chatapp.identity import views as identity_views

urlpatterns = [
    path("favicon.ico", core_views.favicon, name="favicon"),
    # With local passwords off the admin has no password form: people sign in on our page.
    path("admin/login/", accounts_views.admin_login),
    path("admin/password_change/", accounts_views.admin_password_change),
    path("admin/", admin.site.urls),
    path("accounts/logout/", identity_views.sign_out, name="logout"),
    path("accounts/", include("chatapp.accounts.urls")),
    path("api/", include((api_urls(api), "api"))),
    path("v1/models", openai_api.models, name="openai_models"),
    path("v1/models/<path:model_name>", openai_api.model, name="openai_model"),
    path("v1/chat/completions", openai_api.chat_completions, name="openai_chat_completions"),
    # After every /api/ and /v1/ address: the JSON 404 for any other.
    re_path(r"^(?:api|v1)/", unknown_url, name="unknown_api_url"),
    path("oidc/", include("chatapp.identity.urls")),
    path("", include("chatapp.teams.urls")),
    path("", include("chatapp.tools.urls")),
    path("settings/", accounts_views.settings_page, name="settings"),
    path("settings/keys/", accounts_views.key_create, name="key_create"),
    path("settings/delete-account/", accounts_views.delete_account, name="delete_account"),
    path("settings/keys/<id:key_id>/revoke/", accounts_views.key_revoke, name="key_revoke"),
    path("settings/admin-access/", chat_views.admin_access_log, name="admin_access_log"),
    path(
        "site/conversations/<id:conversation_id>/access/",
        chat_views.admin_access_request,
        name="admin_access_request",
    ),
    path(
        "site/conversations/<id:conversation_id>/",
        chat_views.admin_access_read,
        name="admin_access_read",
    ),
    path("c/<id:conversation_id>/share/", chat_views.share_create, name="share_create"),
    path("c/<id:conversation_id>/", chat_views.chat, name="conversation"),
    path("settings/shares/", chat_views.shares, name="shares"),
    path("settings/shares/<id:share_id>/revoke/", chat_views.share_revoke, name="share_revoke"),
    path("s/<slug:share_token>/", chat_views.shared, name="shared"),
    path("s/<slug:share_token>/fork/", chat_views.shared_fork, name="shared_fork"),
    path("", chat_views.chat, name="home"),
]

# JSON under /api/ and /v1/, Django's pages elsewhere.
handler400 = "chatapp.api.bad_request"
handler404 = "chatapp.api.page_not_found"
handler500 = "chatapp.api.server_error"
