"""config.env: each reader gives the value or the default, and refuses a bad value with one
sentence that names the variable and shows what it was given."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_float, env_int, env_list, env_raw, env_str

NAME = "CHAT_TEST_VARIABLE"


@pytest.fixture
def given(monkeypatch):
    """`given("value")` sets the variable; `given(None)` unsets it."""
    monkeypatch.delenv(NAME, raising=False)

    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(NAME, raising=False)
        else:
            monkeypatch.setenv(NAME, value)

    return set_to


def refusal(read) -> str:
    with pytest.raises(ImproperlyConfigured) as raised:
        read()
    sentence = str(raised.value)
    assert sentence.startswith(f"{NAME} must "), sentence
    assert sentence.endswith("."), sentence
    assert "\n" not in sentence
    return sentence


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n"])
def test_unset_or_blank_gives_the_default(given, value):
    given(value)
    assert env_raw(NAME) is None
    assert env_str(NAME, "fallback") == "fallback"
    assert env_bool(NAME, True) is True
    assert env_int(NAME, 7) == 7
    assert env_float(NAME, 2.5) == 2.5
    assert env_choice(NAME, "plain", ["plain", "json"]) == "plain"
    assert env_list(NAME, ["a", "b"]) == ["a", "b"]


def test_str_is_stripped_and_may_have_a_minimum_length(given):
    given("  secret value  ")
    assert env_raw(NAME) == "secret value"
    assert env_str(NAME) == "secret value"
    assert env_str(NAME, min_length=12) == "secret value"
    assert refusal(lambda: env_str(NAME, min_length=16)) == f"{NAME} must be at least 16 characters long."


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("Yes", True), (" ON ", True), ("0", False), ("False", False), ("no", False)],
)
def test_bool_accepts_the_usual_spellings(given, value, expected):
    given(value)
    assert env_bool(NAME, not expected) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_bool_refuses_anything_else(given, value):
    given(value)
    assert refusal(lambda: env_bool(NAME, False)) == f"{NAME} must be 1 or 0 (true/false), not {value!r}."


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("42", 42), (" 1024 ", 1024), ("1_000", 1000)])
def test_int_reads_whole_numbers(given, value, expected):
    given(value)
    assert env_int(NAME, 5, minimum=0, maximum=2000) == expected


@pytest.mark.parametrize(
    ("value", "kwargs", "sentence"),
    [
        ("lots", {}, "must be a whole number, not 'lots'."),
        ("1.5", {}, "must be a whole number, not '1.5'."),
        ("15m", {}, "must be a whole number, not '15m'."),
        ("-1", {}, "must be at least 0, not -1."),
        ("0", {"minimum": 1}, "must be at least 1, not 0."),
        ("1000", {"minimum": 65536}, "must be at least 65536, not 1000."),
        ("70000", {"maximum": 65535}, "must be at most 65535, not 70000."),
    ],
)
def test_int_refuses_a_bad_value(given, value, kwargs, sentence):
    given(value)
    assert refusal(lambda: env_int(NAME, 5, **kwargs)) == f"{NAME} {sentence}"


@pytest.mark.parametrize(("value", "expected"), [("6", 6.0), ("0.25", 0.25), (" 1e1 ", 10.0), ("0", 0.0)])
def test_float_reads_numbers(given, value, expected):
    given(value)
    assert env_float(NAME, 5.0, maximum=60.0) == expected


@pytest.mark.parametrize(
    ("value", "kwargs", "sentence"),
    [
        ("soon", {}, "must be a number, not 'soon'."),
        ("nan", {}, "must be a number, not 'nan'."),
        ("inf", {}, "must be a number, not 'inf'."),
        ("-0.5", {}, "must be at least 0, not -0.5."),
        ("0.5", {"minimum": 1.0}, "must be at least 1, not 0.5."),
        ("90", {"maximum": 60.0}, "must be at most 60, not 90."),
    ],
)
def test_float_refuses_a_bad_value(given, value, kwargs, sentence):
    given(value)
    assert refusal(lambda: env_float(NAME, 5.0, **kwargs)) == f"{NAME} {sentence}"


@pytest.mark.parametrize(("value", "expected"), [("json", "json"), ("JSON", "json"), (" Plain ", "plain")])
def test_choice_ignores_case_and_answers_as_the_choices_spell_it(given, value, expected):
    given(value)
    assert env_choice(NAME, "plain", ["plain", "json"]) == expected
    given(value.upper())
    assert env_choice(NAME, "INFO", ["INFO", "JSON", "PLAIN"]) == expected.upper()


def test_choice_refuses_anything_else(given):
    given("xml")
    assert (
        refusal(lambda: env_choice(NAME, "plain", ["plain", "json"]))
        == f"{NAME} must be one of plain, json, not 'xml'."
    )


def test_list_splits_on_commas_and_drops_empty_entries(given):
    given(" a.example, b.example ,, c.example,")
    assert env_list(NAME, []) == ["a.example", "b.example", "c.example"]


def test_a_blank_list_is_the_default_unless_blank_means_empty(given):
    given("  ")
    assert env_list(NAME, ["127.0.0.1"]) == ["127.0.0.1"]
    assert env_list(NAME, ["127.0.0.1"], blank_is_empty=True) == []
    given(None)
    assert env_list(NAME, ["127.0.0.1"], blank_is_empty=True) == ["127.0.0.1"]


def test_list_entries_pass_the_check_or_stop_with_the_first_bad_one(given):
    def is_digits(entry: str) -> bool:
        return entry.isdigit()

    given("1, 22")
    assert env_list(NAME, [], check=is_digits, items="numbers") == ["1", "22"]
    given("1, two, three")
    assert (
        refusal(lambda: env_list(NAME, [], check=is_digits, items="numbers")) == f"{NAME} must list numbers, not 'two'."
    )
