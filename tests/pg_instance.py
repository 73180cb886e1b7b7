"""A private PostgreSQL server for tests that restart the database.

The machine's PostgreSQL service is shared (other test runs use it at the same time), so a test
that needs a real restart gets its own cluster: Debian's binaries (`/usr/lib/postgresql/*/bin`),
`initdb` into a temporary directory and `pg_ctl` on a free loopback port. PostgreSQL refuses to
run as root; as root the commands run as the `postgres` user (`runuser`), which owns the
directory. When the binaries are missing the test is skipped, or fails when
FRONTDESK_TEST_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import free_port

REQUIRE_SERVICES = os.environ.get("FRONTDESK_TEST_REQUIRE_SERVICES") == "1"


def _binaries() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class PrivatePostgres:
    def __init__(self, bin_dir: Path, root: Path, port: int, run_as: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = port
        self.run_as = run_as

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        argv = [str(self.bin_dir / tool), *args]
        if self.run_as is not None:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = (
                (self.root / "server.log").read_text()
                if (self.root / "server.log").exists()
                else ""
            )
            raise RuntimeError(f"{tool} {args[:1]} failed: {done.stderr or done.stdout}\n{log}")

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _binaries()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        message = "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    run_as: str | None = None
    root = Path(tempfile.mkdtemp(prefix="fd-private-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.fail("running as root needs a `postgres` user to run PostgreSQL as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = "postgres"
    server = PrivatePostgres(bin_dir, root, free_port(), run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        # Not running is fine here (a failed start, or the test left it stopped).
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
