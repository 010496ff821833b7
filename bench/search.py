"""`make bench-search`: search latency over a million generated messages, on PostgreSQL and SQLite.

    .venv/bin/python -m bench.search                        # 1,000,000 messages, both databases
    .venv/bin/python -m bench.search --quick                # 100,000 messages, fewer runs
    .venv/bin/python -m bench.search --messages 2000 --databases sqlite --runs 3
    .venv/bin/python -m bench.search --report bench/results/search.json   # reprint a run's tables

The data (bench/search_data.py): 401 users, 200 rooms (150 public, one of which the searcher is
banned from; 30 private, the searcher invited to 10; 10 direct conversations, the searcher in 5;
10 archived), and the messages, mixed English and Chinese, spread over the rooms by a Zipf-like
law ("general" the busiest), 1 in 200 deleted, a few rare terms planted at known rates. The same
seed gives the same data on both databases.

Each database is made once per size and kept under var/bench-search/ (keyed by the generator's
version, the size and the migrations), so a second run only measures: `manage.py migrate` on a
throwaway PostgreSQL cluster (tests/support/postgres_server.py's, initdb'd with the C.UTF-8 locale,
its data directory kept in the cache) and on a SQLite file, then the rows in bulk, the indexes
built after them (bench/search_db.py); the load and index build times are printed.

Measured: chat.search.search_messages(user=the searcher, q=..., room=None or "general",
limit=20) called in-process (Django pointed at each database in its own process), for the query
mix of bench/search_data.QUERIES (2-character and longer Chinese, English words and substrings
inside words, rare and common terms, a term that matches nothing): a warm-up round that checks
every result against the counts the generator kept (a wrong result fails the run), then --runs
timed rounds with the queries interleaved. p50/p95/p99/max per query, and over all queries of a
case. Target: p95 under 200 ms on PostgreSQL for every query (PASS/MISS). Then the same queries
as GET /api/search/ through a real Daphne worker on the same database (--http-runs rounds; 0
skips it), each answer compared with the in-process one: HTTP p50/p95 columns.

Writes bench/results/search.json (search-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.parse
from pathlib import Path

from bench.search_data import BIG_ROOM, GENERATOR_VERSION, SEARCHER, SEARCHER_PASSWORD
from tests.support import postgres_server
from tests.support.cpu import CpuMeter
from tests.support.daphne_server import DaphneServer, clean_env, free_port, run_manage

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench-search"
RESULTS = ROOT / "bench" / "results"
DATABASES = ["postgresql", "sqlite"]
TARGET_P95_MS = 200  # on PostgreSQL, every query, with and without a room filter
FULL = {"messages": 1_000_000, "runs": 30, "http_runs": 10}
QUICK = {"messages": 100_000, "runs": 10, "http_runs": 5}
# The HTTP part's worker: the searches' rate limits lifted (a benchmark asks far more than a person).
HTTP_ENV = {"CHAT_SEARCH_PER_MINUTE": "1000000", "CHAT_RATE_PER_SECOND": "100000"}
LOCALE = postgres_server.LOCALE  # initdb's: which characters are letters to pg_trgm (Chinese ones too)


class CachedPostgres(postgres_server.PostgresServer):
    """tests/support's throwaway PostgreSQL, with its cluster in `directory` (made there by initdb
    with a UTF-8 locale the first time, started again on a free port later) and kept on exit."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def __enter__(self) -> CachedPostgres:
        if self.bin is None:
            raise RuntimeError("PostgreSQL's server binaries are not installed: apt-get install postgresql")
        self.tmpdir = self.directory
        fresh = not (self.directory / "data" / "PG_VERSION").exists()
        if fresh:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            if os.geteuid() == 0:
                user = pwd.getpwnam("postgres")
                os.chown(self.directory, user.pw_uid, user.pw_gid)
        self.port = free_port()
        try:
            if fresh:
                data = str(self.directory / "data")
                options = ("-U", "postgres", "--auth=trust", "-E", "UTF8", f"--locale={LOCALE}", "--no-sync")
                self._run("initdb", "-D", data, *options)
            self.start()
            if fresh:
                self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "chat")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop("fast")  # the data directory stays: the cache

    def version(self) -> str:
        assert self.bin is not None
        return subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()


def schema_key() -> str:
    """The migrations' and the generator's code, hashed: a cached database made under other
    migrations, or by another generator (a forgotten GENERATOR_VERSION bump), is stale."""
    digest = hashlib.sha256()
    generator = [ROOT / "bench" / "search_data.py", ROOT / "bench" / "search_db.py"]
    for path in [*sorted((ROOT / "chat" / "migrations").glob("*.py")), *generator]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def cache_dir(cache: Path, messages: int) -> Path:
    return cache / f"v{GENERATOR_VERSION}-{messages}-{schema_key()}"


def drop_stale(cache: Path, keep: Path, messages: int) -> None:
    """Other versions of the same size (an older generator or schema): removed, they are big."""
    for other in cache.glob(f"v*-{messages}-*"):
        if other != keep and other.is_dir():
            print(f"Removing a stale cached database: {other}", flush=True)
            shutil.rmtree(other, ignore_errors=True)


def django_env(url: str) -> dict[str, str]:
    return clean_env(
        {
            "DATABASE_URL": url,
            "DJANGO_SECRET_KEY": "bench-search, not a secret",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )


def run_db(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "bench.search_db", *args], cwd=ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"bench.search_db {args[0]} exited with {result.returncode}")


def prepare(database: str, url: str, meta: Path, messages: int) -> dict:
    """The database at `url` as the generator makes it (made now unless `meta` says it was)."""
    if meta.exists():
        found = json.loads(meta.read_text())
        found["cached"] = True
        return found
    print(f"{database}: migrating, then loading {messages:,} messages ...", flush=True)
    env = django_env(url)
    started = time.monotonic()
    run_manage(env, "migrate", "--noinput", timeout=600)
    migrate_seconds = time.monotonic() - started
    draft = meta.with_suffix(".draft")
    run_db(env, "load", "--messages", str(messages), "--meta", str(draft))
    found = json.loads(draft.read_text())
    found["load"]["migrate_seconds"] = migrate_seconds
    meta.write_text(json.dumps(found, ensure_ascii=False) + "\n")  # last: a complete database
    draft.unlink()
    found["cached"] = False
    return found


def measure(url: str, meta: Path, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="chat-bench-search-") as tmp:
        output = Path(tmp) / "measure.json"
        run_db(django_env(url), "measure", "--meta", str(meta), "--runs", str(runs), "--output", str(output))
        return json.loads(output.read_text())


def measure_http(url: str, result: dict, runs: int) -> None:
    """GET /api/search/ through a real Daphne worker (bin/daphne-worker, one process) on the same
    database, signed in as the searcher, over one kept-alive connection: each query of each case
    once (its answer compared with the in-process one), then `runs` timed rounds. Adds
    http_p50_ms, http_p95_ms (and http_error, if any) to each row of `result`."""
    from bench.search_db import percentile

    with DaphneServer(env={"DATABASE_URL": url, **HTTP_ENV}, seed=False, startup_timeout=60) as server:
        cookie = server.login(SEARCHER, SEARCHER_PASSWORD)
        assert server.port is not None
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

        def get(q: str, room: str | None) -> tuple[int, bytes]:
            query = urllib.parse.urlencode({"q": q, **({"room": room} if room else {})})
            connection.request("GET", f"/api/search/?{query}", headers={"Cookie": cookie})
            response = connection.getresponse()
            return response.status, response.read()

        try:
            for case in result["cases"]:
                rows = case["queries"]
                for row in rows:
                    status, body = get(row["q"], case["room"])
                    found = len(json.loads(body).get("messages", [])) if status == 200 else None
                    if found != row["returned"]:
                        row["http_error"] = f"HTTP {status}, {found} messages: {body[:200]!r}"
                times: list[list[float]] = [[] for _ in rows]
                for _ in range(runs):
                    for row, timed in zip(rows, times, strict=True):
                        started = time.perf_counter()
                        get(row["q"], case["room"])
                        timed.append((time.perf_counter() - started) * 1000)
                for row, timed in zip(rows, times, strict=True):
                    row["http_p50_ms"] = round(percentile(timed, 50), 2)
                    row["http_p95_ms"] = round(percentile(timed, 95), 2)
        finally:
            connection.close()


def run_database(database: str, directory: Path, messages: int, runs: int, http_runs: int) -> dict:
    meta = directory / f"{database}.json"
    if database == "sqlite":
        path = directory / "sqlite.db"
        if not meta.exists():
            for stale in directory.glob("sqlite.db*"):
                stale.unlink()
        url = f"sqlite:///{path}"
        found = prepare(database, url, meta, messages)
        result = measure(url, meta, runs)
        if http_runs:
            measure_http(url, result, http_runs)
        result["server"] = f"SQLite {sqlite3.sqlite_version}"
    else:
        if not meta.exists():
            shutil.rmtree(directory / "postgresql", ignore_errors=True)
        with CachedPostgres(directory / "postgresql") as pg:
            found = prepare(database, pg.url, meta, messages)
            result = measure(pg.url, meta, runs)
            if http_runs:
                measure_http(pg.url, result, http_runs)
            result["server"] = f"{pg.version()}, locale {LOCALE}, shared_buffers at its default"
    result["load"] = found["load"]
    result["cached"] = found["cached"]
    result["messages"] = found["messages"]
    result["http_runs"] = http_runs
    return result


# Report ----------------------------------------------------------------------------------------


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(headers: list[str], rows: list[list]) -> str:
    """bench/layers.py's table, with Chinese counted as two columns wide."""
    cells = [headers, *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(width(row[i]) for row in cells) for i in range(len(headers))]

    def pad(text: str, w: int, left: bool) -> str:
        fill = " " * (w - width(text))
        return text + fill if left else fill + text

    lines = ["  ".join(pad(c, w, i < 3) for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def load_line(result: dict) -> str:
    load = result["load"]
    indexes = load["indexes"]
    search = {k: v for k, v in indexes.items() if any(s in v["definition"].lower() for s in ("trgm", "gin", "fts5"))}
    built = ", ".join(f"{name} {v['seconds']:.1f} s" for name, v in search.items()) or load.get("fts_filled_by", "-")
    others = sum(v["seconds"] for k, v in indexes.items() if k not in search)
    how = "cached, made earlier" if result["cached"] else "made now"
    return (
        f"{result['messages']:,} messages ({how}): migrate {load.get('migrate_seconds', 0):.1f} s, "
        f"rows {load['rows_seconds']:.1f} s, search index {built}, other indexes {others:.1f} s, "
        f"analyze {load['analyze_seconds']:.1f} s; {load['total_seconds']:.0f} s in all"
    )


def verdict_for(row: dict) -> str:
    return "PASS" if row["p95_ms"] < TARGET_P95_MS else "MISS"


def report(data: dict) -> str:
    parts = []
    for database, result in data["results"].items():
        postgres = database == "postgresql"
        headers = ["case", "query", "q", "matches", "returned", "first ms", "p50 ms", "p95 ms", "p99 ms", "max ms"]
        over_http = bool(result.get("http_runs"))
        headers += ["HTTP p50", "HTTP p95"] if over_http else []
        headers += ["p95 < 200 ms"] if postgres else []
        rows = []
        for case in result["cases"]:
            for row in [*case["queries"], case["all"]]:
                line = [case["case"], row["query"], row.get("q", ""), row.get("expected"), row.get("returned")]
                line += [row.get("first_ms"), row["p50_ms"], row["p95_ms"], row["p99_ms"], row["max_ms"]]
                line += [row.get("http_p50_ms"), row.get("http_p95_ms")] if over_http else []
                rows.append(line + ([verdict_for(row)] if postgres else []))
        title = f"{result['server']}: {result['runs']} timed runs a query in-process, limit {result['limit']}"
        if over_http:
            title += f"; HTTP p50/p95 in ms over {result['http_runs']} runs (GET /api/search/, one Daphne worker)"
        parts += [title, load_line(result), table(headers, rows), ""]
        if postgres:
            timed = [(row["p95_ms"], row["query"], case["case"]) for case in result["cases"] for row in case["queries"]]
            worst = max(timed)
            ok = worst[0] < TARGET_P95_MS
            parts += [
                f"PostgreSQL, p95 under {TARGET_P95_MS} ms for every query with and without a room filter: "
                f"{'PASS' if ok else 'MISS'} (slowest p95 {worst[0]} ms: {worst[1]}, {worst[2]})",
                "",
            ]
        for case in result["cases"]:
            for row in case["queries"]:
                for key in ("error", "http_error"):
                    if row.get(key):
                        where = f"{database}{' over HTTP' if key == 'http_error' else ''}, {case['case']}"
                        parts.append(f"WRONG RESULT on {where}, {row['query']} ({row['q']}): {row[key]}")
    busy = data.get("machine_busy_before_percent")
    if busy is not None:
        parts.append(
            f"The machine was {busy}% busy (of one core) before the run; cores: {data['machine']['cpu_count']}."
        )
    return "\n".join(parts).rstrip()


def add_totals(result: dict) -> None:
    """Each case's row over all its queries (the slowest figure of each column's kind: the
    per-query percentiles are kept, not every timing)."""
    for case in result["cases"]:
        rows = case["queries"]
        case["all"] = {
            "query": "(slowest of all)",
            **{
                k: max(row[k] for row in rows)
                for k in ("first_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "http_p50_ms", "http_p95_ms")
                if k in rows[0]
            },
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 messages and 10 runs a query")
    parser.add_argument("--messages", type=int, help="messages to generate (default 1,000,000)")
    parser.add_argument("--runs", type=int, help="timed runs per query and case (default 30)")
    parser.add_argument(
        "--http-runs", type=int, help="timed runs of GET /api/search/ per query and case (default 10; 0: none)"
    )
    parser.add_argument("--databases", default=",".join(DATABASES), help="postgresql,sqlite (default both)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where generated databases are kept")
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/search.json)")
    parser.add_argument("--report", type=Path, metavar="JSON", help="print the tables of an earlier run and exit")
    options = parser.parse_args()
    if options.report:
        print(report(json.loads(options.report.read_text())))
        return 0
    databases = [d for d in options.databases.split(",") if d]
    unknown = set(databases) - set(DATABASES)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    if "postgresql" in databases and not postgres_server.available():
        parser.error(
            "PostgreSQL's server binaries are not installed (apt-get install postgresql; `make bench-search` does)"
        )
    config = dict(QUICK if options.quick else FULL)
    config["messages"] = options.messages or config["messages"]
    config["runs"] = options.runs or config["runs"]
    config["http_runs"] = config["http_runs"] if options.http_runs is None else options.http_runs
    output = options.output or RESULTS / ("search-quick.json" if options.quick else "search.json")
    directory = cache_dir(options.cache, config["messages"])
    directory.mkdir(parents=True, exist_ok=True)
    drop_stale(options.cache, directory, config["messages"])
    started = time.time()
    before = CpuMeter({}).sample()
    time.sleep(1)
    data: dict = {
        "config": config,
        "target_p95_ms": TARGET_P95_MS,
        "room_filter": BIG_ROOM,
        "machine_busy_before_percent": CpuMeter.percent(before, CpuMeter({}).sample())["machine"],
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": {},
    }
    for database in databases:
        result = run_database(database, directory, config["messages"], config["runs"], config["http_runs"])
        add_totals(result)
        data["results"][database] = result
    data["seconds"] = round(time.time() - started)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(report(data))
    print(f"\nTook {data['seconds']} s. Figures: {output}")
    wrong = any(
        row["error"] or row.get("http_error")
        for result in data["results"].values()
        for case in result["cases"]
        for row in case["queries"]
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
