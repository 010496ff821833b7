from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chat.ops import health, metrics
from chat.web import accounts, views

urlpatterns = [
    path("", include("chat.urls")),
    path("accounts/login/", views.ChatLoginView.as_view(), name="login"),
    path("accounts/logout/", accounts.ChatLogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(form_class=accounts.ChatPasswordChangeForm),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password_reset/", accounts.ChatPasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(template_name="registration/password_reset_sent.html"),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        accounts.ChatPasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/password_reset_finished.html"),
        name="password_reset_complete",
    ),
    path("accounts/settings/", accounts.account_settings, name="account_settings"),
    path("accounts/emails/off/<str:token>/", accounts.email_off, name="email_off"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]
