from django.contrib.auth import views as auth_views
from django.urls import path

from chatapp.accounts import views

# accounts/logout/ is chatapp.identity's sign_out (it offers the provider's sign-out too).
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("signup/", views.signup, name="signup"),
    path("signup/confirm/<str:signature>/", views.signup_confirm, name="signup_confirm"),
    path(
        "password/",
        views.when_passwords_on(views.PasswordChangeView.as_view()),
        name="password_change",
    ),
    path(
        "password/done/",
        views.when_passwords_on(auth_views.PasswordChangeDoneView.as_view()),
        name="password_change_done",
    ),
    # A forgotten password, by email (only where EMAIL_URL is set and passwords are on).
    path(
        "password/reset/",
        views.when_reset_offered(views.PasswordResetView.as_view()),
        name="password_reset",
    ),
    path(
        "password/reset/sent/",
        views.when_reset_offered(views.PasswordResetDoneView.as_view()),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        views.when_reset_offered(views.PasswordResetConfirmView.as_view()),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        views.when_reset_offered(auth_views.PasswordResetCompleteView.as_view()),
        name="password_reset_complete",
    ),
]
