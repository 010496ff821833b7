"""A throwaway PostgreSQL for tests: its own cluster (initdb) on a free port, deleted afterwards.

Uses Debian's server binaries (/usr/lib/postgresql/<version>/bin; `make test` installs the
`postgresql` package when it runs as root). When they are absent, `available()` says so and the
cluster tests fall back to a SQLite file shared by the workers, as the issue allows.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.daphne_server import free_port

LOCALE = "C.UTF-8"  # glibc's built-in UTF-8 locale: no locale package needed


def bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def available() -> bool:
    return bindir() is not None


class PostgresServer:
    def __init__(self) -> None:
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self.bin = bindir()
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/chat"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:1])} failed: {result.stderr or result.stdout}")

    def __enter__(self) -> PostgresServer:
        if self.bin is None:
            raise RuntimeError("PostgreSQL's server binaries are not installed: apt-get install postgresql")
        self.tmpdir = Path(tempfile.mkdtemp(prefix="chat-postgres-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.tmpdir, user.pw_uid, user.pw_gid)
        self.port = free_port()
        data = self.tmpdir / "data"
        try:
            # A UTF-8 LC_CTYPE, whatever the environment's: under C, pg_trgm drops every non-ASCII
            # character, and search's trigram index could not find Chinese text (docs/search.md).
            options = ("-U", "postgres", "--auth=trust", "-E", "UTF8", f"--locale={LOCALE}", "--no-sync")
            self._run("initdb", "-D", str(data), *options)
            self.start()
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "chat")
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        """Start the server (again, after stop(): a PostgreSQL restart on the same port, same data)."""
        options = (
            f"-p {self.port} -k {self.tmpdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        data = str(self.tmpdir / "data")
        self._run("pg_ctl", "-D", data, "-o", options, "-l", str(self.tmpdir / "postgres.log"), "-w", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends every session (clients see their connection closed),
        `immediate` is a crash. start() brings it back with the same data."""
        if self.started:
            self._run("pg_ctl", "-D", str(self.tmpdir / "data"), "-m", mode, "-w", "stop")
            self.started = False

    def __exit__(self, *exc_info) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.tmpdir / "data"), "-m", "immediate", "-w", "stop")
            finally:
                self.started = False
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
