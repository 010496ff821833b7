"""A tiny `make bench-search` (bench/search.py), through the same code: 2,000 generated messages
on SQLite only, 2 timed runs a query in-process and 1 over HTTP (a real Daphne worker). The
harness checks every first page of results against the counts its generator kept, and the HTTP
answers against the in-process ones (a wrong result makes it exit 1); here, that it ran every
query of the mix in both cases, wrote its figures, and that a second run (in-process only)
reuses the generated database. Seconds; the figures themselves are `make bench-search`'s business.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.search_data import BIG_ROOM, QUERIES
from tests.support.daphne_server import REPO_ROOT, clean_env


def run_harness(tmp_path, *, http_runs: int) -> tuple[subprocess.CompletedProcess, dict]:
    output = tmp_path / "search.json"
    command = [sys.executable, "-m", "bench.search", "--messages", "2000", "--databases", "sqlite", "--runs", "2"]
    command += ["--http-runs", str(http_runs), "--cache", str(tmp_path / "cache"), "--output", str(output)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, json.loads(output.read_text())


@pytest.mark.timeout(60)
def test_the_search_benchmark_runs_on_a_small_sqlite_database(tmp_path):
    printed, data = run_harness(tmp_path, http_runs=1)
    sqlite = data["results"]["sqlite"]
    assert sqlite["messages"] == 2000 and not sqlite["cached"]
    assert [case["room"] for case in sqlite["cases"]] == [None, BIG_ROOM]
    for case in sqlite["cases"]:
        assert [row["q"] for row in case["queries"]] == [q for _, q in QUERIES]
        for row in case["queries"]:
            assert row["error"] is None, (case["case"], row)
            assert row["returned"] == min(row["expected"], 20), row
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"], row
            assert "http_error" not in row and row["http_p50_ms"] > 0, row
    by_q = {row["q"]: row for row in sqlite["cases"][0]["queries"]}
    assert by_q["会议"]["expected"] > 20 and by_q["deploy"]["expected"] > 20, by_q  # common terms are common
    assert by_q["琉璃猫"]["expected"] == 0  # the term that matches nothing
    assert "SQLite" in printed.stdout and "会议" in printed.stdout, printed.stdout

    again, data = run_harness(tmp_path, http_runs=0)
    assert data["results"]["sqlite"]["cached"], again.stdout
    assert "migrating" not in again.stdout, again.stdout
