"""The deployment files: every variable the compose file reads is in .env.example, and the image is
a slim, non-root worker."""

import re

from tests.support.daphne_server import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"


ENV_EXAMPLE = REPO_ROOT / ".env.example"


def test_every_variable_the_file_reads_is_in_env_example():
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = set(re.findall(r"(?m)^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text()))
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"


def test_dockerfile_builds_a_slim_non_root_worker_image():
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"(?m)^FROM (\S+)", text)
    assert stages and all(image.startswith("python:3.11-slim") for image in stages)
    users = re.findall(r"(?m)^USER (\S+)", text)
    assert users and users[-1] not in {"root", "0"}
    assert "requirements.txt" in text and "requirements-dev.txt" not in text
    assert '"bin/daphne-worker"' in text and '"--proxy-headers"' in text
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".git", "var", ".secret_key", ".env"):
        assert path in ignored
