"""The terminal client (`python -m clients.terminal`) under a pseudo-terminal, through pexpect."""

from __future__ import annotations

import io
import sys

import pexpect

from tests.support.daphne_server import REPO_ROOT, DaphneServer, clean_env

WAIT = 10


PASSWORD = {"CHAT_PASSWORD": "chatdemo"}


ID = r"#\d+ "  # a message's id, which commands take, starts its line
TIME = r"\[\d\d:\d\d\] "


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = clean_env(extra)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the client must not need Django settings
    return env


def spawn(server: DaphneServer, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    """The client in a pseudo-terminal; everything it printed is in `child.logfile_read`."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "clients.terminal", "--url", server.ws_url, *args],
        cwd=str(REPO_ROOT),
        env=client_env(env),
        encoding="utf-8",
        timeout=WAIT,
        echo=False,
        dimensions=(50, 250),
    )
    child.logfile_read = io.StringIO()
    return child


def output(child: pexpect.spawn) -> str:
    return child.logfile_read.getvalue().replace("\r\n", "\n")


def finish(child: pexpect.spawn) -> int:
    """Wait for the client to exit; its exit status."""
    child.expect(pexpect.EOF, timeout=WAIT)
    child.close()
    return child.exitstatus
