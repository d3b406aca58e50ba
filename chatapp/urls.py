from django.contrib import admin
from django.urls import include, path

from chatapp.accounts import views as accounts_views
from chatapp.chat import views as chat_views
from chatapp.core import views as core_views

urlpatterns = [
    path("favicon.ico", core_views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/", include("chatapp.accounts.urls")),
    path("api/", include("chatapp.chat.api_urls")),
    path("", include("chatapp.teams.urls")),
    path("settings/", accounts_views.settings_page, name="settings"),
    path("c/<int:conversation_id>/", chat_views.chat, name="conversation"),
    path("", chat_views.chat, name="home"),
]
