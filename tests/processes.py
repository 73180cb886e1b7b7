"""Starting and stopping real `frontdesk serve` processes for multi-process tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

FRONTDESK = str(Path(sys.executable).parent / "frontdesk")
REDIS_URL = os.environ.get("FRONTDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def base_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(data_dir),
        FRONTDESK_SECRET_KEY="shared-secret-for-every-process-0123456789",
        FRONTDESK_LOG_LEVEL="warning",
        FRONTDESK_PUBLIC_URL="http://127.0.0.1:1",
        **extra,
    )
    if database_url:
        env["FRONTDESK_DATABASE_URL"] = database_url
    return env


def start_server(env: dict[str, str], timeout_s: float = 30) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [FRONTDESK, "serve"],
        env={**env, "FRONTDESK_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("frontdesk serve exited during start-up")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("frontdesk serve did not start")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRONTDESK, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
