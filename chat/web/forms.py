"""Forms of the pages people use (the admin has its own)."""

from datetime import timedelta
from typing import Any

from confusable_homoglyphs import confusables
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models import MAX_DIRECT_MEMBERS, MAX_ROOM_NAME_LENGTH, MAX_ROOM_TOPIC_LENGTH, MAX_SLUG_LENGTH, Room
from chat.slugs import slug_from_name

ROOMS_PER_HOUR = 10  # per user: enough for a team, not for a script filling the room list


class RoomCreateForm(forms.Form):
    name = forms.CharField(max_length=MAX_ROOM_NAME_LENGTH)
    slug = forms.CharField(
        label="Address",
        max_length=MAX_SLUG_LENGTH,
        required=False,
        help_text="The room's address, /rooms/&lt;address&gt;/: lowercase letters, digits and hyphens. "
        "Leave it empty to make one from the name (a name in another script is transliterated).",
    )
    topic = forms.CharField(max_length=MAX_ROOM_TOPIC_LENGTH, required=False)
    private = forms.BooleanField(required=False, help_text="Only members can see and join a private room.")
    members = forms.CharField(
        label="Invite",
        required=False,
        help_text="For a private room: the usernames of the people to add, separated by commas or spaces.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_slug(self) -> str:
        return self.cleaned_data["slug"].strip().lower()

    def clean_members(self) -> list[User]:
        names = {name for name in self.cleaned_data["members"].replace(",", " ").split() if name}
        names.discard(self.user.get_username())
        users = list(get_user_model().objects.filter(username__in=names, is_active=True))
        unknown = sorted(names - {u.get_username() for u in users})
        if unknown:
            raise ValidationError(f"No such user: {', '.join(unknown)}.")
        return users

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if "name" not in data:
            return data
        slug = data.get("slug") or slug_from_name(data["name"])
        if not slug:
            self.add_error("slug", "Choose an address: the name has no letters or digits to make one from.")
            return data
        try:
            for validate in Room._meta.get_field("slug").validators:  # the format, and 'new' reserved
                validate(slug)
        except ValidationError as error:
            self.add_error("slug", error)
            return data
        if Room.objects.filter(slug=slug).exists():
            self.add_error("slug", f"A room with the address '{slug}' already exists.")
        data["slug"] = slug
        if data.get("members") and not data.get("private"):
            self.add_error("members", "Invitations are for private rooms: anyone can join a public room.")
        recent = Room.objects.filter(created_by=self.user, created_at__gte=timezone.now() - timedelta(hours=1))
        if recent.count() >= ROOMS_PER_HOUR:
            raise ValidationError(f"You have created {ROOMS_PER_HOUR} rooms in the last hour: try again later.")
        return data


class UsernamesField(forms.Field):
    """Usernames from several inputs of the same name (the picker's checkboxes), each once."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        values = value if isinstance(value, list | tuple) else [value] if value else []
        names = (str(name).strip() for name in values)
        return list(dict.fromkeys(name for name in names if name))


class DirectForm(forms.Form):
    """Whom to start a direct conversation with. Who may be named is chat.services.direct_open's
    rule; the form only refuses what it can tell by counting."""

    users = UsernamesField(error_messages={"required": _("Choose at least one person.")})

    def clean_users(self) -> list[str]:
        names: list[str] = self.cleaned_data["users"]
        if len(names) > MAX_DIRECT_MEMBERS - 1:
            raise ValidationError(_("Choose at most %(count)d people.") % {"count": MAX_DIRECT_MEMBERS - 1})
        return names


class SignupForm(UserCreationForm):
    """Django's sign-up form (its username field already applies NFKC, and it refuses a name that
    differs from a taken one only in case), plus: no name that mixes scripts, or mixes in
    characters that look like another script's (Cyrillic `а` in `аdmin`), which could pass for
    someone else's. A name wholly in one script that looks like another's (Cyrillic `асе`
    against Latin `ace`) is not caught: the library compares no names with each other."""

    error_messages = {
        **UserCreationForm.error_messages,
        "confusable": _(
            "This username mixes alphabets or uses characters that look like others (such as a "
            "Cyrillic \u201c\u0430\u201d for a Latin \u201ca\u201d), so it could pass for someone "
            "else's. Please use characters from one alphabet."
        ),
    }

    email = forms.EmailField(
        label=_("Email"),
        help_text=_("For resetting your password and for emails about direct messages and mentions you have not read."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta:
        model = User
        fields = ("username", "email")
        field_classes = {"username": UsernameField}

    def clean_email(self) -> str:
        return clean_unique_email(self.cleaned_data["email"])

    def validate_password_for_user(self, user: User, password_field_name: str = "password1") -> None:
        # Django puts a too short or too common password's errors under the confirmation; they
        # belong under the password itself, the field to change.
        super().validate_password_for_user(user, "password1")  # type: ignore[misc]

    # Django's returns None for a name that is taken (its stub says str).
    def clean_username(self) -> str | None:  # type: ignore[override]
        username: str | None = super().clean_username()  # None when it is taken (the error is already added)
        if username and confusables.is_dangerous(username):
            raise ValidationError(self.error_messages["confusable"], code="confusable")
        return username


def clean_unique_email(email: str, *, user: User | None = None) -> str:
    """One account per address (compared without regard to case), so a password-reset email
    reaches the account its reader means."""
    email = get_user_model().objects.normalize_email(email.strip())
    others = get_user_model().objects.filter(email__iexact=email)
    if user is not None:
        others = others.exclude(pk=user.pk)
    if email and others.exists():
        raise ValidationError(_("Another account already uses this email address."), code="email_taken")
    return email
