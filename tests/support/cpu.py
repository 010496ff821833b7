"""CPU used by groups of processes and by the whole machine, from /proc: what `make bench` and
`make bench-layers` report next to their figures, and tests/e2e/test_bench_smoke.py computes on
the way."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def machine_jiffies() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)  # busy (all but idle, iowait), total


def pids_where(test: Callable[[int, str], bool]) -> list[int]:
    """The pids whose (pid, command line) pass `test`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if test(
                    int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


class CpuMeter:
    """CPU used by named groups of processes, and the whole machine, between two samples."""

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]]) -> None:
        self.groups = groups  # name -> function returning the pids to count now

    def sample(self) -> dict[str, Any]:
        sample = {name: sum(cpu_seconds(pid) for pid in pids()) for name, pids in self.groups.items()}
        return {**sample, "machine": machine_jiffies(), "t": time.time()}

    @staticmethod
    def percent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
        wall = after["t"] - before["t"]
        busy, total = (a - b for a, b in zip(after["machine"], before["machine"], strict=True))
        shares = {
            name: round(100 * (after[name] - before[name]) / wall) for name in before if name not in ("t", "machine")
        }
        return {**shares, "machine": round(100 * (os.cpu_count() or 1) * busy / max(total, 1))}
