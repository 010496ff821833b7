"""A pytest plugin (pyproject.toml: `-p tests.prepare`): prepares the checkout as manage.py does
(config.checkout: the local secret key, the folders the settings name) before pytest-django loads
the settings, which only read them."""

import pytest

from config.checkout import prepare_checkout


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    prepare_checkout()
