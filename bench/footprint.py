"""What one idle connection holds in the server, by allocation site (tracemalloc).

RSS says how much a connection costs; this says where. With `--tracemalloc` the idle scenario
starts the server with `FRONTDESK_BENCH_TRACEMALLOC=<dir>`: the server traces allocations
(`tracemalloc.start`) and writes a snapshot to that directory on every SIGUSR1. The bench takes
one before the first connection and one after each hold, and reports the difference divided by
the connections open: bytes per connection by source line, and the same grouped by file.

Tracing slows the server down several times and adds its own bookkeeping to RSS: the RSS and CPU
figures of a traced run are not comparable with an untraced one (the bench marks the run).
"""

from __future__ import annotations

import os
import signal
import time
import tracemalloc
from pathlib import Path
from typing import Any

ENV = "FRONTDESK_BENCH_TRACEMALLOC"
FRAMES = 12  # enough to see which FrontDesk line an asyncio object was made for


def install_from_env() -> None:
    """(server side) Trace allocations and dump a snapshot on SIGUSR1, when asked to."""
    directory = os.environ.get(ENV)
    if not directory:
        return
    tracemalloc.start(FRAMES)
    counter = {"n": 0}

    def dump(_signum: int, _frame: Any) -> None:
        path = Path(directory) / f"snapshot-{counter['n']}.tracemalloc"
        counter["n"] += 1
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").rename(path)

    signal.signal(signal.SIGUSR1, dump)


def take(pid: int, directory: Path, index: int, timeout_s: float = 120.0) -> Path:
    """(bench side) Ask the server for snapshot number `index` and wait until it is written."""
    path = directory / f"snapshot-{index}.tracemalloc"
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no tracemalloc snapshot from the server after {timeout_s} s")
        time.sleep(0.1)
    return path


def _interesting(frames: tracemalloc.Traceback) -> str:
    """The allocating line, and the innermost FrontDesk (or bench app) line that led to it."""
    lines = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in frames]
    ours = next(
        (
            f"{f.filename.split('/frontdesk/', 1)[-1]}:{f.lineno}"
            for f in reversed(frames)  # innermost first
            if "/frontdesk/" in f.filename and "site-packages" not in f.filename
        ),
        None,
    )
    return f"{lines[-1]}" + (f"  <- frontdesk/{ours}" if ours else "")


def per_connection(before: Path, after: Path, connections: int, top: int = 40) -> dict[str, Any]:
    """Bytes (and objects) per connection that appeared between two snapshots."""
    keep = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    ]
    old = tracemalloc.Snapshot.load(str(before)).filter_traces(keep)
    new = tracemalloc.Snapshot.load(str(after)).filter_traces(keep)
    n = max(connections, 1)
    total = sum(s.size_diff for s in new.compare_to(old, "filename"))
    by_site: dict[str, list[int]] = {}
    for stat in new.compare_to(old, "traceback"):
        site = _interesting(stat.traceback)
        entry = by_site.setdefault(site, [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    sites = sorted(by_site.items(), key=lambda item: -item[1][0])[:top]
    files = sorted(new.compare_to(old, "filename"), key=lambda s: -s.size_diff)[:top]
    return {
        "connections": connections,
        "traced_bytes_per_conn": round(total / n),
        "sites": [
            {
                "site": site,
                "bytes_per_conn": round(size / n),
                "objects_per_conn": round(count / n, 2),
            }
            for site, (size, count) in sites
        ],
        "files": [
            {
                "file": s.traceback[0].filename.split("site-packages/")[-1],
                "bytes_per_conn": round(s.size_diff / n),
            }
            for s in files
        ],
    }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"   tracemalloc: {report['traced_bytes_per_conn']} B traced per connection "
        f"({report['connections']} open)"
    )
    for row in report["sites"]:
        print(f"   {row['bytes_per_conn']:>7} B {row['objects_per_conn']:>6} obj  {row['site']}")
