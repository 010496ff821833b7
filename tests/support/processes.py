"""`manage.py` in a fresh process with its own environment, and the check that it stopped with one
sentence instead of a stack trace."""

import subprocess
import sys

from tests.support.daphne_server import REPO_ROOT, clean_env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess, *sentences: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"exited 0 despite a bad setting:\n{output}"
    for sentence in sentences:
        assert sentence in result.stderr, f"{sentence!r} not in stderr:\n{result.stderr}"
    assert "Traceback" not in output, f"a stack trace instead of a sentence:\n{output}"
    assert len(result.stderr.strip().splitlines()) <= 3, f"more than a sentence:\n{result.stderr}"
