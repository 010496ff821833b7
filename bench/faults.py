"""Fault injection against the local production topology: `make faults`.

    .venv/bin/python -m bench.faults                    # every scenario, under 10 minutes
    .venv/bin/python -m bench.faults --quick            # smaller counts, shorter phases
    .venv/bin/python -m bench.faults --scenario redis   # one scenario (repeatable)

The scenarios, the clients and the checks are tests/support/faults.py's (tests/e2e/test_faults.py
runs them with smaller counts); this is their command line and report. Writes
bench/results/faults.json; exits 1 if anything was lost, duplicated, or acked without being
stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support.faults import SCENARIOS, Environment, facts, run_scenario

ROOT = Path(__file__).resolve().parent.parent
ALIASES = dict(zip("abcdef", SCENARIOS, strict=True))

FULL: dict[str, dict[str, Any]] = {
    "kill": {"clients": 200, "rooms": 10, "talkers": 3, "rate": 1.0, "before": 5, "after": 10},
    "redis": {"clients": 100, "rooms": 5, "talkers": 3, "rate": 1.0, "before": 4, "outage": 6, "after": 8},
    "postgres": {"clients": 100, "rooms": 5, "talkers": 3, "rate": 1.0, "before": 4, "outage": 6, "after": 8},
    "slow": {"members": 40, "talkers": 5, "rate": 2.0, "before": 8, "pause": 30, "body": 300},
    "storm": {"clients": 1000, "rooms": 20, "talkers": 1, "rate": 1.0, "before": 3, "after": 5},
    "sigterm": {"clients": 150, "rooms": 10, "talkers": 3, "rate": 1.0, "before": 4, "after": 8},
}
QUICK: dict[str, dict[str, Any]] = {
    "kill": {**FULL["kill"], "clients": 100, "after": 6},
    "redis": {**FULL["redis"], "clients": 50, "outage": 4, "after": 5},
    "postgres": {**FULL["postgres"], "clients": 50, "outage": 4, "after": 5},
    "slow": {**FULL["slow"], "members": 20, "before": 5, "pause": 15},
    "storm": {**FULL["storm"], "clients": 400},
    "sigterm": {**FULL["sigterm"], "clients": 80, "after": 6},
}


# Report -----------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells)])


def summary_rows(results: dict[str, dict]) -> list[list]:
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append([name, f"ERROR: {r['error']}"] + [""] * 8)
            continue
        rows.append(
            [
                name,
                r.get("clients"),
                r.get("acked"),
                r.get("delivered"),
                r.get("lost"),
                r.get("duplicated"),
                f"{r.get('sockets_dropped')} / {r.get('recovered')}",
                f"{r.get('recovery_p50_s')} / {r.get('recovery_max_s')}",
                f"{r.get('memory_before_mib')} -> {r.get('memory_after_mib')}",
                r.get("seconds"),
            ]
        )
    return rows


HEADERS = [
    "scenario",
    "clients",
    "acked",
    "delivered",
    "lost",
    "dup",
    "dropped / recovered",
    "recovery p50 / max s",
    "workers' RSS MiB before -> after",
    "s",
]


def report(results: dict[str, dict]) -> str:
    lines = [table(HEADERS, summary_rows(results)), ""]
    for name, r in results.items():
        lines.append(f"{name}:")
        lines += [f"  - {f}" for f in facts(name, r) if f]
    return "\n".join(lines)


def bad(results: dict[str, dict]) -> list[str]:
    problems = []
    for name, r in results.items():
        if "error" in r:
            problems.append(f"{name}: did not run ({r['error']})")
            continue
        for key in ("lost", "duplicated", "acked_not_stored"):
            if r.get(key):
                problems.append(f"{name}: {key} {r[key]}")
    return problems


def machine_info() -> dict:
    versions = {}
    for package in ("daphne", "channels", "channels-redis", "redis", "django", "psycopg", "websockets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


async def run(names: list[str], configs: dict, log=print) -> dict[str, dict]:
    results: dict[str, dict] = {}
    with Environment(log=log) as env:
        for name in names:
            log(f"[{time.strftime('%H:%M:%S')}] {name}: {configs[name]}")
            results[name] = await run_scenario(env, name, configs[name])
            r = results[name]
            log(
                "  -> "
                + (
                    r["error"]
                    if "error" in r
                    else f"acked {r.get('acked')}, lost {r.get('lost')}, dup {r.get('duplicated')}, {r['seconds']} s"
                )
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter phases")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS + list(ALIASES), help="run only this (repeatable)"
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "faults.json"))
    options = parser.parse_args(argv)
    names = [ALIASES.get(n, n) for n in (options.scenario or SCENARIOS)]
    names = [n for n in SCENARIOS if n in names]
    configs = QUICK if options.quick else FULL
    started = time.monotonic()
    results = asyncio.run(run(names, configs))
    print()
    print(report(results))
    data = {
        "machine": machine_info(),
        "quick": options.quick,
        "seconds": round(time.monotonic() - started, 1),
        "scenarios": results,
    }
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nWrote {output} ({data['seconds']} s).")
    problems = bad(results)
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
