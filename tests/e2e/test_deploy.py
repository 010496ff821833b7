"""The docker-compose deployment, validated without a Docker engine (none runs here):

- the Compose Specification's JSON schema (check-jsonschema's vendored copy) accepts the file;
- a real compose implementation (Debian's docker-compose) parses it with .env.example,
  resolving anchors, interpolation and references, and refuses it without the required secrets;
- what the deployment needs holds in the resolved config (scalable web with a /readyz
  healthcheck, one-shot migrate first, PostgreSQL with a volume and a healthcheck, nginx last);
- `nginx -t` accepts the nginx config exactly as the nginx image renders it from the template,
  inside the image's main config, with `web` resolving as Docker's DNS would make it resolve;
- the Dockerfile builds a slim, non-root image that starts workers as `make cluster` does.

The same topology runs with real processes in test_cluster.py (`make cluster`).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.daphne_server import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"


def render_template(text: str, values: dict[str, str]) -> str:
    # bin/cluster's renderer (bin/ is not a package: load it by path)
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("chat_cluster_runner", str(REPO_ROOT / "bin" / "cluster"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module.render_template(text, values)


def compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed: `make test` installs it as root (apt-get install docker-compose)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "POSTGRES_", "HTTP_PORT"))}
    return subprocess.run(
        [binary, "--project-directory", str(REPO_ROOT), "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's volumes, from `source:target[:mode]` strings."""
    pairs = (volume.split(":")[:2] for volume in service.get("volumes", []))
    return {target: source for source, target in pairs}


@pytest.fixture(scope="module")
def resolved():
    result = compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_specification_schema_accepts_the_file():
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_parses_it_with_the_example_env(resolved):
    assert set(resolved["services"]) == {"redis", "postgres", "migrate", "web", "nginx"}
    assert set(resolved["volumes"]) == {"pgdata", "static", "uploads"}


def test_missing_secrets_stop_compose_with_a_sentence(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(re.sub(r"(?m)^POSTGRES_PASSWORD=.*$", "", ENV_EXAMPLE.read_text()))
    result = compose("config", "-q", env_file=env_file)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


def test_web_is_scalable_and_ready_only_when_the_database_and_layer_answer(resolved):
    web = resolved["services"]["web"]
    assert "container_name" not in web and "ports" not in web  # `--scale web=4` needs both absent
    assert "/readyz" in " ".join(web["healthcheck"]["test"])
    assert web["command"][:1] == ["bin/daphne-worker"] and "--proxy-headers" in web["command"]
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert web["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert web["depends_on"]["redis"]["condition"] == "service_healthy"
    env = web["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://chat:") and env["DATABASE_URL"].endswith("@postgres:5432/chat")
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["DJANGO_SECRET_KEY"]


def test_migrate_runs_once_before_the_workers(resolved):
    migrate = resolved["services"]["migrate"]
    assert migrate["restart"] == "no"
    assert "migrate --noinput" in " ".join(migrate["command"]) and "collectstatic" in " ".join(migrate["command"])
    assert migrate["image"] == resolved["services"]["web"]["image"]


def test_postgres_keeps_its_data_in_a_volume_and_has_a_healthcheck(resolved):
    postgres = resolved["services"]["postgres"]
    assert mounts(postgres)["/var/lib/postgresql/data"] == "pgdata"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    # Search's trigram index needs a UTF-8 LC_CTYPE to index Chinese (docs/search.md).
    assert "--locale=C.UTF-8" in postgres["environment"]["POSTGRES_INITDB_ARGS"].split()
    assert "pg_isready" not in " ".join(resolved["services"]["redis"]["healthcheck"]["test"])


def test_nginx_is_the_only_published_port_and_mounts_the_template(resolved):
    published = {name for name, service in resolved["services"].items() if service.get("ports")}
    assert published == {"nginx"}
    nginx = resolved["services"]["nginx"]
    assert nginx["depends_on"]["web"]["condition"] == "service_healthy"
    volumes = mounts(nginx)
    template = Path(volumes["/etc/nginx/templates/default.conf.template"])
    assert template == REPO_ROOT / "deploy" / "nginx" / "chat.conf.template" and template.exists()
    assert volumes["/srv/static"] == "static"
    assert mounts(resolved["services"]["migrate"])["/srv/static"] == "static"  # collectstatic fills it


def test_the_workers_and_nginx_share_the_uploads(resolved):
    web, nginx = resolved["services"]["web"], resolved["services"]["nginx"]
    assert mounts(web)["/srv/uploads"] == "uploads" and mounts(nginx)["/srv/uploads"] == "uploads"
    assert "/srv/uploads:ro" in " ".join(nginx["volumes"])  # nginx only reads them
    assert web["environment"]["CHAT_MEDIA_ROOT"] == nginx["environment"]["CHAT_MEDIA_ROOT"] == "/srv/uploads"
    assert web["environment"]["CHAT_FILES_ACCEL_REDIRECT"] == "/_protected/"
    assert web["environment"]["CHAT_UPLOAD_MAX_BYTES"] == nginx["environment"]["CHAT_UPLOAD_MAX_BYTES"]


# nginx -t -----------------------------------------------------------------------------------------

# The main config of the nginx image (nginx:1.27-alpine), which includes conf.d/*.conf.
IMAGE_MAIN_CONF = """
worker_processes auto;
error_log {root}/error.log notice;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    sendfile on;
    keepalive_timeout 65;
    include {root}/conf.d/*.conf;
}}
"""


def nginx_test(root: Path, hosts: dict[str, str]) -> subprocess.CompletedProcess:
    """`nginx -t` on ROOT/nginx.conf, in a mount namespace whose /etc/hosts maps HOSTS (as Docker's
    DNS would), so upstream names resolve without touching this machine's /etc/hosts."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed: `make test` installs it as root (nginx-light)"
    hosts_file = root / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in hosts.items()))
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    script = f'mount --bind "{hosts_file}" /etc/hosts && exec "{nginx}" -t -p "{root}" -c "{root}/nginx.conf"'
    return subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, timeout=30)


def image_environment(nginx: dict) -> dict[str, str]:
    """The nginx container's environment once the image's entrypoint has sourced the *.envsh
    scripts mounted in /docker-entrypoint.d/, as it does before rendering the templates."""
    environment = dict(nginx["environment"])
    for target, source in mounts(nginx).items():
        if target.startswith("/docker-entrypoint.d/") and target.endswith(".envsh"):
            assert os.access(source, os.X_OK), f"{source} must be executable, or the image ignores it"
            script = f'. "{source}" && env -0'
            result = subprocess.run(
                ["sh", "-c", script], env=environment, capture_output=True, text=True, timeout=10, check=True
            )
            environment = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    return environment


def test_nginx_accepts_the_config_the_image_renders_from_the_template(resolved, tmp_path):
    nginx = resolved["services"]["nginx"]
    environment = image_environment(nginx)
    assert environment["CHAT_CLIENT_MAX_BODY_SIZE"] == str(26214400 + 1048576)  # follows CHAT_UPLOAD_MAX_BYTES
    rendered = render_template((REPO_ROOT / "deploy/nginx/chat.conf.template").read_text(), environment)
    assert "${" not in rendered
    assert "server web:8000" in rendered and "listen 80;" in rendered
    for directive in (
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_read_timeout 1h;",
        "alias /srv/static/;",
        "alias /srv/uploads/;",
        "client_max_body_size 27262976;",
        "client_max_body_size 1m;",
    ):
        assert directive in rendered
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "default.conf").write_text(rendered)
    (tmp_path / "nginx.conf").write_text(IMAGE_MAIN_CONF.format(root=tmp_path))
    result = nginx_test(tmp_path, {"web": "127.0.0.1"})
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr

    # and the check is real: a name nothing resolves fails it
    broken = rendered.replace("server web:8000", "server no-such-service:8000")
    (tmp_path / "conf.d" / "default.conf").write_text(broken)
    assert nginx_test(tmp_path, {"web": "127.0.0.1"}).returncode != 0


def test_nginx_accepts_the_config_make_cluster_renders(tmp_path):
    values = {
        "CHAT_LISTEN": "127.0.0.1:8000",
        "CHAT_UPSTREAM_SERVERS": "server 127.0.0.1:8001 max_fails=1 fail_timeout=5s;\n    server 127.0.0.1:8002;",
        "CHAT_STATIC_ROOT": str(tmp_path / "static"),
        "CHAT_MEDIA_ROOT": str(tmp_path / "uploads"),
        "CHAT_CLIENT_MAX_BODY_SIZE": "27262976",
    }
    rendered = render_template((REPO_ROOT / "deploy/nginx/chat.conf.template").read_text(), values)
    assert "$http_upgrade" in rendered and "$remote_addr" in rendered  # nginx's own stay
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "chat.conf").write_text(rendered)
    (tmp_path / "nginx.conf").write_text(IMAGE_MAIN_CONF.format(root=tmp_path))
    result = nginx_test(tmp_path, {})
    assert result.returncode == 0, result.stderr


# The image --------------------------------------------------------------------------------------
