"""Account settings a user changes themselves: their email address and whether they get
notification emails (chat/notifications.py sends them)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from chat.models import EmailPreference


def notifications_on(*, user: User) -> bool:
    """Whether `user` gets notification emails: on until they turn them off."""
    preference = EmailPreference.objects.filter(user=user).first()
    return preference is None or preference.notify


@transaction.atomic
def settings_update(*, user: User, email: str | None = None, notify: bool | None = None) -> None:
    """Change what is given; None leaves it as it is."""
    if email is not None and email != user.email:
        user.email = email
        user.save(update_fields=["email"])
    if notify is not None:
        EmailPreference.objects.update_or_create(user=user, defaults={"notify": notify})
