from django.urls import path

from chatapp.identity import views

urlpatterns = [
    path("authenticate/", views.SignInStart.as_view(), name="oidc_authentication_init"),
    path("callback/", views.SignInCallback.as_view(), name="oidc_authentication_callback"),
]
