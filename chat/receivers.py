"""Hooks into Django auth: a session that ends closes the sockets opened with it (the login
lockout's known browsers hook in from chat.web.devices); and a deleted upload's stored files.

Django's own views (logout, password change, admin user edits) announce these only as
signals, so this is where they are wired; the work itself is in `chat.events`.
"""

from collections.abc import Iterable

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_migrate, post_save
from django.http import HttpRequest

from chat import usercache


def on_logged_out(sender: type, request: HttpRequest | None, user: User | None, **kwargs: object) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        from chat import events

        events.session_ended(user_id=user.pk, session_key=session_key)


def on_user_saved(
    sender: type[User], instance: User, created: bool, update_fields: Iterable[str] | None = None, **kwargs: object
) -> None:
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    # `_password` is set between set_password() and save(): the password changed, and every
    # session made with the old one stops authenticating. A deactivated user is shut out too.
    if getattr(instance, "_password", None) is not None or not instance.is_active:
        from chat import events

        events.user_revalidate_on_commit(user_id=instance.pk)


def on_user_deleted(sender: type[User], instance: User, **kwargs: object) -> None:
    from chat import events

    events.user_revalidate_on_commit(user_id=instance.pk)


def on_migrated(sender: object, using: str = "default", **kwargs: object) -> None:
    """On SQLite, put back search's triggers if a migration dropped them (chat.search.sqlite_install)."""
    from chat import search

    search.sqlite_ensure(using=using)


def on_upload_deleted(sender: type, instance: object, **kwargs: object) -> None:
    # However the row goes (a deleted message, a purge, the admin, its room deleted), its stored
    # files go when that commits.
    from chat import files

    files.files_delete_on_commit(instance)  # type: ignore[arg-type]


def connect() -> None:
    from chat.models import Upload

    post_delete.connect(on_upload_deleted, sender=Upload, dispatch_uid="chat.upload_deleted")
    User = get_user_model()
    user_logged_out.connect(on_logged_out, dispatch_uid="chat.logged_out")
    post_save.connect(on_user_saved, sender=User, dispatch_uid="chat.user_saved")
    post_delete.connect(on_user_deleted, sender=User, dispatch_uid="chat.user_deleted")
    # The copy a handshake reads (chat.usercache) goes with any change to the account.
    post_save.connect(usercache.on_user_changed, sender=User, dispatch_uid="chat.user_cache_saved")
    post_delete.connect(usercache.on_user_changed, sender=User, dispatch_uid="chat.user_cache_deleted")
    post_migrate.connect(on_migrated, sender=apps.get_app_config("chat"), dispatch_uid="chat.search_index")
