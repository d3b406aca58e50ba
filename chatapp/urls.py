from django.contrib import admin
from django.urls import include, path

from chatapp.core import views as core_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("chatapp.accounts.urls")),
    path("", core_views.home, name="home"),
]
