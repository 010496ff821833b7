"""Account pages beyond logging in: password reset by email, the account settings (email address,
notification emails), the one-click "turn these emails off" link, and logging out with a word of
confirmation."""

from __future__ import annotations

import logging
from typing import Any

from axes.utils import reset as axes_reset
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm, PasswordResetForm, SetPasswordForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt

from chat import accounts, throttle
from chat.notifications import user_for_email_off_token
from chat.web.forms import clean_unique_email

logger = logging.getLogger(__name__)

RESET_WINDOW = 3600  # seconds: CHAT_PASSWORD_RESETS_PER_HOUR reset emails per client address in it
# The accounts `seed_demo` makes (chat/management/commands/seed_demo.py).
DEMO_USERNAMES = ("alice", "bob", "carol")


def demo_logins_shown() -> bool:
    """The login page names the demo accounts only where CHAT_DEMO_LOGINS is on (DJANGO_DEBUG=1,
    `make run`) and the seeded accounts are there to log in to."""
    if not settings.CHAT_DEMO_LOGINS:
        return False
    found = get_user_model().objects.filter(username__in=DEMO_USERNAMES, is_active=True).count()
    return found == len(DEMO_USERNAMES)


class NewPasswordFirstMixin:
    """A too short or too common new password gets its errors under "New password", the field to
    change, rather than under its confirmation (where Django puts them)."""

    def validate_password_for_user(self, user: User, password_field_name: str = "new_password1") -> None:
        super().validate_password_for_user(user, "new_password1")  # type: ignore[misc]


class ChatSetPasswordForm(NewPasswordFirstMixin, SetPasswordForm):
    pass


class ChatPasswordChangeForm(NewPasswordFirstMixin, PasswordChangeForm):
    pass


class ChatPasswordResetForm(PasswordResetForm):
    email = forms.EmailField(
        label=gettext_lazy("Email"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
        help_text=gettext_lazy("The address of your account."),
    )


class ChatPasswordResetView(auth_views.PasswordResetView):
    """Django's: the same answer whether or not an account has that address (nobody learns who
    has an account), and at most CHAT_PASSWORD_RESETS_PER_HOUR emails asked for per client address
    an hour, so the form cannot flood someone's inbox."""

    form_class = ChatPasswordResetForm
    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        key = f"chat:password-reset:{throttle.address_key(self.request.META.get('REMOTE_ADDR'))}"
        if throttle.cache_count(key) >= settings.CHAT_PASSWORD_RESETS_PER_HOUR:
            logger.warning(
                "Password reset refused: %s emails from %s this hour", settings.CHAT_PASSWORD_RESETS_PER_HOUR, key
            )
            refusal = _(
                "Too many password resets have been asked for from your network in the last hour. Please try again later."
            )
            return render(self.request, self.template_name, {"form": form, "refusal": refusal}, status=429)
        throttle.cache_hit(key, RESET_WINDOW)
        return super().form_valid(form)


class ChatPasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's. Setting the new password changes the account's session hash, so every session of
    the account stops authenticating, and its open sockets close (chat/receivers.py); it also lifts
    the account's login lockouts."""

    form_class = ChatSetPasswordForm
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form: SetPasswordForm) -> HttpResponse:
        response = super().form_valid(form)
        # Whoever reads the account's email chose this password: the login lockouts of the old
        # one (django-axes) no longer protect anything, and would keep its owner out.
        axes_reset(username=form.user.get_username())
        return response


class ChatLogoutView(auth_views.LogoutView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        was_logged_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if was_logged_in:  # the message store outlives the session: it is a cookie first
            messages.success(request, _("You have logged out."))
        return response


class AccountSettingsForm(forms.Form):
    email = forms.EmailField(
        label=gettext_lazy("Email"),
        required=False,
        help_text=gettext_lazy("For resetting your password and for notification emails."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    notify = forms.BooleanField(
        label=gettext_lazy("Email me about direct messages and mentions I have not read"),
        required=False,
        help_text=gettext_lazy(
            "One email when a direct message or a mention has waited unread for a while, never two about the same message."
        ),
    )

    password = forms.CharField(
        label=gettext_lazy("Current password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=gettext_lazy("Needed to change the email address."),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_email(self) -> str:
        return clean_unique_email(self.cleaned_data["email"], user=self.user)

    def clean(self) -> dict[str, Any]:
        # Whoever controls the address can reset the password: someone at an unattended browser
        # must not be able to point it at their own inbox.
        data = super().clean() or {}
        if "email" in data and data["email"] != self.user.email and not self.user.check_password(data["password"]):
            self.add_error("password", _("Enter your current password to change the email address."))
        return data


@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    initial = {"email": user.email, "notify": accounts.notifications_on(user=user)}
    form = AccountSettingsForm(request.POST or None, user=user, initial=initial)
    if request.method == "POST" and form.is_valid():
        accounts.settings_update(user=user, email=form.cleaned_data["email"], notify=form.cleaned_data["notify"])
        messages.success(request, _("Your settings have been saved."))
        return redirect("account_settings")
    status = 400 if form.errors else 200
    return render(request, "registration/account_settings.html", {"form": form}, status=status)


@csrf_exempt  # the signed token is the authority; mail programs post here without a CSRF token (RFC 8058)
def email_off(request: HttpRequest, token: str) -> HttpResponse:
    """The link at the bottom of each notification email. Opening it asks for one click (mail
    scanners open links by themselves, and must not turn anything off); the click, or a mail
    program's own "Unsubscribe" (a POST), turns the emails off."""
    user = user_for_email_off_token(token)
    if user is None:
        return render(request, "registration/email_off.html", {"invalid": True}, status=400)
    done = request.method == "POST"
    if done:
        accounts.settings_update(user=user, notify=False)
    return render(request, "registration/email_off.html", {"done": done, "account": user})
