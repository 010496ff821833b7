"""A room's address made from its name, in whatever script the name is written.

Addresses stay ASCII (lowercase letters, digits and hyphens: `chat.models.slug_validator`): they
are the `room` of every frame, part of every URL and typed in the terminal client, where
`/join kai-fa-zu` is easier than an address in a script the keyboard may not have. A name in
another script is transliterated with anyascii (`开发组` → `kai-fa-zu`, `Команда` → `komanda`);
the name itself is kept as written, and shown everywhere. A name with letters that have no
transliteration gets a generated address (`room-` and six random characters).
"""

import secrets
import string
import unicodedata

from anyascii import anyascii
from django.utils.text import slugify

from chat.models import MAX_SLUG_LENGTH

GENERATED_PREFIX = "room-"
_GENERATED_ALPHABET = string.ascii_lowercase + string.digits


def _transliterate(name: str) -> str:
    # anyascii joins ideographs' readings without a space ("KaiFaZu"); a hyphen between the
    # syllables of wide (East Asian) characters keeps the address readable.
    parts = []
    for char in name:
        if char.isascii():
            parts.append(char)
        elif unicodedata.east_asian_width(char) in ("W", "F") and char.isalnum():
            parts.append(f" {anyascii(char)} ")
        else:
            parts.append(anyascii(char))
    return "".join(parts)


def has_letters_or_digits(name: str) -> bool:
    return any(char.isalnum() for char in name)


def generated_slug() -> str:
    return GENERATED_PREFIX + "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(6))


def slug_from_name(name: str) -> str:
    """The address for a room called `name`, or "" when the name has no letters or digits."""
    if not has_letters_or_digits(name):
        return ""
    slug = slugify(_transliterate(name))[:MAX_SLUG_LENGTH].strip("-")
    return slug or generated_slug()
