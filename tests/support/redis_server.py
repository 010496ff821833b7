"""A throwaway redis-server on a free loopback port, for tests that need a real Redis."""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.daphne_server import free_port


class RedisServer:
    def __init__(self) -> None:
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.tmpdir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> "RedisServer":
        self.port = free_port()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="chat-redis-"))
        self.start()
        return self

    def stop(self) -> None:
        """Stop the server (its data is gone: it keeps nothing on disk)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def start(self) -> None:
        """Start the server on its port (again, after stop(): a Redis restart)."""
        binary = shutil.which("redis-server")
        if binary is None:  # `make test` installs it (bin/ensure-system-packages)
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmpdir),
                "--logfile",
                str(self.tmpdir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within 10 s")

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
