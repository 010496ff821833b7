"""Run `bin/cluster` (what `make cluster` runs) for tests: nginx -> N Daphne workers -> Redis and
a database, all real processes on free loopback ports. Not a test module.

    with ClusterServer(workers=3, database_url=pg.url) as cluster:
        cookie = cluster.login("alice", worker=2)     # through worker 2 directly
        cluster.ws_url()                              # through nginx
        cluster.ws_url(worker=1)                      # straight to worker 1
        cluster.kill_worker(1)                        # SIGKILL
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.daphne_server import DEMO_PASSWORD, REPO_ROOT, HttpSession, clean_env, free_port


class ClusterServer:
    def __init__(
        self,
        *,
        workers: int = 3,
        database_url: str | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workers = workers
        self.database_url = database_url
        self.redis_url = redis_url  # None: the runner starts its own redis-server
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.state: dict[str, Any] = {}
        self.stop_code: int | None = None

    # Life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> ClusterServer:
        self.tmp = tempfile.TemporaryDirectory(prefix="chat-cluster-")
        self.dir = Path(self.tmp.name)
        self.port = free_port()
        self.log_path = self.dir / "runner.log"
        database_url = self.database_url or f"sqlite:///{self.dir / 'db.sqlite3'}"
        self.env = clean_env({"DAPHNE": str(Path(sys.executable).parent / "daphne"), **self.extra_env})
        command = [
            sys.executable,
            str(REPO_ROOT / "bin" / "cluster"),
            "--workers",
            str(self.workers),
            "--port",
            str(self.port),
            "--worker-ports",
            "auto",
            *(["--redis-url", self.redis_url] if self.redis_url else ["--redis-port", str(free_port())]),
            "--dir",
            str(self.dir),
            "--database-url",
            database_url,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        state_file = self.dir / "cluster.json"
        while not state_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"bin/cluster did not come up:\n{self.log()}")
            time.sleep(0.1)
        self.state = json.loads(state_file.read_text())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop_code = self.interrupt()
        self.tmp.cleanup()

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl+C: SIGINT to the runner; its exit code once it has stopped everything."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            for pid in self.child_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def child_pids(self) -> list[int]:
        pids = [w["pid"] for w in self.state.get("workers", [])]
        if self.state.get("nginx"):
            pids.append(self.state["nginx"]["pid"])
        return pids

    # Addresses -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.state["url"]

    def worker_port(self, worker: int) -> int:
        return self.state["workers"][worker - 1]["port"]

    def base_url(self, worker: int | None = None) -> str:
        return self.url if worker is None else f"http://127.0.0.1:{self.worker_port(worker)}"

    def ws_url(self, worker: int | None = None) -> str:
        return self.base_url(worker).replace("http://", "ws://") + "/ws/chat/"

    @property
    def origin(self) -> str:
        """The Origin of a page served through nginx; a page on a worker's own port has that
        worker's base_url as its Origin (the check compares scheme, host and port)."""
        return self.url

    def worker_pid(self, worker: int) -> int:
        return self.state["workers"][worker - 1]["pid"]

    def worker_log(self, worker: int) -> str:
        return Path(self.state["workers"][worker - 1]["log"]).read_text(errors="replace")

    def kill_worker(self, worker: int, sig: int = signal.SIGKILL) -> None:
        os.kill(self.worker_pid(worker), sig)

    # Users ---------------------------------------------------------------------------------

    def session(self, worker: int | None = None) -> HttpSession:
        return HttpSession(self.base_url(worker))

    def login_session(self, username: str, password: str = DEMO_PASSWORD, *, worker: int | None = None) -> HttpSession:
        browser = self.session(worker)
        response = browser.submit("/accounts/login/", {"username": username, "password": password})
        assert response.status == 200 and browser.cookie("sessionid"), (
            f"login as {username} failed: {response.status} at {response.url}"
        )
        return browser

    def login(self, username: str, password: str = DEMO_PASSWORD, *, worker: int | None = None) -> str:
        return self.login_session(username, password, worker=worker).cookie_header()

    def manage(self, *args: str) -> str:
        """`manage.py ARGS` against the cluster's database and Redis; its stdout."""
        env = {
            **self.env,
            "DATABASE_URL": self.state["database_url"],
            "REDIS_URL": self.state["redis_url"],
            "DJANGO_SECRET_KEY": (self.dir / "secret_key").read_text().strip(),
        }
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "--verbosity", "0", "--command", code).strip()
