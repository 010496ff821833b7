"""A Daphne worker that stops gracefully: `python -m server.worker [daphne options] APP`.

bin/daphne-worker starts this instead of the `daphne` script; the options are Daphne's own.

Daphne alone, on SIGTERM, stops its reactor at once: it cancels every application and drops every
TCP connection, so clients see 1006 (no close frame) and the consumers' disconnect handlers
(groups, presence) never run. Here SIGTERM (and SIGINT) instead:

1. stops listening, so the proxy sends new connections to the other workers;
2. closes every open WebSocket with 1001 (going away), which clients treat as "reconnect";
3. waits until the clients have answered and the consumers' disconnect handlers have finished,
   at most CHAT_SHUTDOWN_TIMEOUT seconds (default 5);
4. then stops as Daphne does. A second signal stops at once.

It also listens with a backlog of CHAT_LISTEN_BACKLOG (default 1024; the kernel caps it at
net.core.somaxconn) instead of Twisted's 50. With 50, a reconnect storm (1000 sockets dropped at
once, bench/faults.py `storm`) overflowed the accept queue: connects through nginx timed out,
nginx marked every worker down (`max_fails=1`) and answered "no live upstreams" for minutes.

`--proxy-headers` believes only the proxies in CHAT_TRUSTED_PROXIES: see chat.realtime.daphne.trust_only_our_proxies.

Its own variables (WorkerConfig) are read through config.env like the settings, and checked with
them before Daphne starts: a bad value stops it with one sentence and exit status 2.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, cast

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.core.exceptions import ImproperlyConfigured
from twisted.internet import reactor as twisted_reactor
from twisted.internet.interfaces import IDelayedCall

from chat.realtime.codes import CloseCode
from config.checkout import prepare_checkout
from config.env import env_float, env_int

logger = logging.getLogger(__name__)


class Reactor(Protocol):
    """What this module asks of Twisted's reactor. Twisted types the reactor with zope interfaces,
    whose methods are declared without `self`: mypy misreads them (that takes the mypy-zope
    plugin), so the reactor is seen through this instead."""

    def callLater(self, delay: float, callable: Callable[..., object], /, *args: object) -> IDelayedCall: ...

    def callWhenRunning(self, callable: Callable[..., object], /, *args: object) -> int | None: ...

    def callFromThread(self, callable: Callable[..., object], /, *args: object) -> None: ...


reactor = cast(Reactor, twisted_reactor)


class ListeningPort(Protocol):
    """A port Twisted listens on (its IListeningPort, seen as Reactor explains)."""

    def stopListening(self) -> object: ...


@dataclass(frozen=True)
class WorkerConfig:
    listen_backlog: int  # CHAT_LISTEN_BACKLOG
    check_seconds: float  # CHAT_CONNECTION_CHECK_SECONDS
    shutdown_timeout: float  # CHAT_SHUTDOWN_TIMEOUT

    @classmethod
    def from_environment(cls) -> WorkerConfig:
        return cls(
            listen_backlog=env_int("CHAT_LISTEN_BACKLOG", 1024, minimum=1),
            check_seconds=env_float("CHAT_CONNECTION_CHECK_SECONDS", 6.0, minimum=1.0),
            shutdown_timeout=env_float("CHAT_SHUTDOWN_TIMEOUT", 5.0, minimum=0.0),
        )


def with_backlog(endpoint: str, backlog: int) -> str:
    """A TCP endpoint description (what -b/-p become) with a backlog, unless it names one."""
    if endpoint.startswith("tcp:") and ":backlog=" not in endpoint:
        return f"{endpoint}:backlog={backlog}"
    return endpoint


class GracefulServer(Server):
    endpoints: list[str]
    _app_ticks = 0
    _timeout_ticks = 0
    _ports: list[ListeningPort]
    _draining: bool

    def __init__(self, *args: Any, config: WorkerConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config
        self.endpoints = [with_backlog(e, config.listen_backlog) for e in self.endpoints]

    # Daphne walks every connection each second (application_checker: reap finished consumers,
    # cancel slow closers) and every 2 s (timeout_checker: handshake timeouts, pings). With 5,000
    # idle sockets those two walks were about 40% of an idle worker's CPU (py-spy; make bench W2,
    # docs/performance.md). Here each runs Daphne's own code every CHAT_CONNECTION_CHECK_SECONDS
    # (default 6) and only reschedules itself on the ticks between: a finished consumer is reaped
    # up to 6 s later, a ping goes out 20 to 26 s after the last (--ping-interval 20), a stuck
    # handshake is dropped up to 6 s after its limit. The graceful drain below has its own check.
    def application_checker(self) -> None:
        self._app_ticks += 1
        if self._app_ticks % max(1, round(self.config.check_seconds)):
            reactor.callLater(1, self.application_checker)
            return
        super().application_checker()

    def timeout_checker(self) -> None:
        self._timeout_ticks += 1
        if self._timeout_ticks % max(1, round(self.config.check_seconds / 2)):
            reactor.callLater(2, self.timeout_checker)
            return
        super().timeout_checker()

    def run(self) -> None:
        self._ports = []
        self._draining = False
        reactor.callWhenRunning(self._install_signal_handlers)
        reactor.callWhenRunning(self._start_notification_emails)
        reactor.callWhenRunning(self._start_upload_purge)
        super().run()

    def _start_notification_emails(self) -> None:
        # Every worker runs it; a row lock per user makes each email go out once (chat/notifications.py).
        from chat.notifications import start_runner

        start_runner()

    def _start_upload_purge(self) -> None:
        # Every worker runs it; row locks make each pending upload go once (chat/files.py).
        from chat.files import start_runner

        start_runner()

    def listen_success(self, port: ListeningPort) -> None:
        self._ports.append(port)
        super().listen_success(port)

    def _install_signal_handlers(self) -> None:
        # Twisted installed its own (stop the reactor) as it started; these replace them.
        def on_signal(signum: int, frame: FrameType | None) -> None:
            reactor.callFromThread(self.drain, signal.Signals(signum).name)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)

    def _open_sockets(self) -> list[WebSocketProtocol]:
        return [p for p in list(self.connections) if isinstance(p, WebSocketProtocol) and p.state == p.STATE_OPEN]

    def _busy(self) -> list[WebSocketProtocol]:
        """WebSockets not yet closed, or whose application has not finished its disconnect."""
        busy: list[WebSocketProtocol] = []
        for protocol, details in list(self.connections.items()):
            if not isinstance(protocol, WebSocketProtocol):
                continue
            instance = details.get("application_instance")
            if "disconnected" not in details or (instance is not None and not instance.done()):
                busy.append(protocol)
        return busy

    def drain(self, reason: str = "SIGTERM") -> None:
        if self._draining:  # a second signal: stop now
            logger.warning("%s again: stopping without waiting", reason)
            self.stop()
            return
        self._draining = True
        for port in self._ports:
            port.stopListening()
        sockets = self._open_sockets()
        timeout = self.config.shutdown_timeout
        logger.warning(
            "%s: closing %d WebSocket(s) with %d, waiting up to %.0f s",
            reason,
            len(sockets),
            CloseCode.GOING_AWAY,
            timeout,
        )
        for protocol in sockets:
            # autobahn's sendClose() only lets applications send 1000 or 3000-4999; 1001 is the
            # protocol's own "going away", sent here as the server it is.
            try:
                protocol.sendCloseFrame(
                    code=int(CloseCode.GOING_AWAY), reasonUtf8=b"server shutting down", isReply=False
                )
            except Exception:
                logger.exception("Could not close a WebSocket with %d", CloseCode.GOING_AWAY)
                protocol.dropConnection(abort=True)
        deadline = time.monotonic() + timeout

        def check() -> None:
            try:
                busy = self._busy()
            except Exception:
                logger.exception("Could not list the open WebSockets")
                busy = []
            if not busy or time.monotonic() >= deadline:
                if busy:
                    logger.warning("%d WebSocket(s) still open after %.0f s: stopping anyway", len(busy), timeout)
                else:
                    logger.warning("Every WebSocket closed cleanly: stopping")
                self.stop()
            else:
                reactor.callLater(0.05, check)

        check()


class GracefulCommandLineInterface(CommandLineInterface):
    def __init__(self, config: WorkerConfig) -> None:
        super().__init__()
        self.server_class = functools.partial(GracefulServer, config=config)


def main() -> None:
    try:
        prepare_checkout()  # the local secret key and folders; loads (and so checks) the settings
        config = WorkerConfig.from_environment()
    except ImproperlyConfigured as error:
        # As manage.py: a configuration mistake gets one sentence, not a stack trace.
        sys.stderr.write(f"Configuration error: {error}\n")
        sys.exit(2)

    from chat.realtime.daphne import trust_only_our_proxies

    trust_only_our_proxies()  # config.asgi does it too; early here, before Daphne starts
    GracefulCommandLineInterface(config).run(sys.argv[1:])


if __name__ == "__main__":
    main()
