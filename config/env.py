"""Typed readers of the environment: each returns the variable's value or its default, or stops with
one sentence that names the variable and says what is wrong (README "Configuration").

A variable that is unset or blank counts as unset. They read and check; they never write.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})

Number = TypeVar("Number", int, float)


def env_raw(name: str) -> str | None:
    """The variable without surrounding blanks; None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_str(name: str, default: str = "", *, min_length: int = 0) -> str:
    raw = env_raw(name)
    if raw is None:
        return default
    if len(raw) < min_length:
        raise ImproperlyConfigured(f"{name} must be at least {min_length} characters long.")
    return raw


def env_bool(name: str, default: bool) -> bool:
    raw = env_raw(name)
    if raw is None:
        return default
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0 (true/false), not {os.environ[name]!r}.")


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env_raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {os.environ[name]!r}.") from None
    return _in_range(name, value, minimum, maximum)


def env_float(name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    raw = env_raw(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # nan and inf parse, but are no number of seconds
        raise ImproperlyConfigured(f"{name} must be a number, not {os.environ[name]!r}.")
    return _in_range(name, value, minimum, maximum)


def _in_range(name: str, value: Number, minimum: Number, maximum: Number | None) -> Number:
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {_number(minimum)}, not {_number(value)}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {_number(maximum)}, not {_number(value)}.")
    return value


def _number(value: float) -> str:
    """1 for 1.0, 0.5 for 0.5: as a person would write it."""
    return str(int(value)) if float(value).is_integer() else str(value)


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    """One of `choices`, matched without regard to case and returned as `choices` spells it."""
    raw = env_raw(name)
    if raw is None:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {os.environ[name]!r}.")


def env_list(
    name: str,
    default: Sequence[str],
    *,
    blank_is_empty: bool = False,
    check: Callable[[str], bool] | None = None,
    items: str = "",
) -> list[str]:
    """Comma-separated entries, each stripped, empty ones dropped.

    Unset gives `default`; so does blank, unless `blank_is_empty` (then blank means none). With
    `check`, an entry it refuses stops start-up: "NAME must list ITEMS, not 'entry'."
    """
    if name not in os.environ or (env_raw(name) is None and not blank_is_empty):
        return list(default)
    entries = [entry.strip() for entry in os.environ[name].split(",") if entry.strip()]
    if check is not None:
        for entry in entries:
            if not check(entry):
                raise ImproperlyConfigured(f"{name} must list {items}, not {entry!r}.")
    return entries
