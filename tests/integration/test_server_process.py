"""A real `frontdesk` process: the CLI creates a site and loads knowledge, `serve` answers over
HTTP + SSE, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sse import parse_sse

FRONTDESK = str(Path(sys.executable).parent / "frontdesk")
pytestmark = pytest.mark.server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRONTDESK, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def server_env(database_url: str | None, tmp_path: Path) -> dict[str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(tmp_path / "data"),
        FRONTDESK_PUBLIC_URL=f"http://127.0.0.1:{port}",
        FRONTDESK_PORT=str(port),
        FRONTDESK_LOG_LEVEL="warning",
    )
    if database_url:
        env["FRONTDESK_DATABASE_URL"] = database_url
    return env


@pytest.fixture
def server(server_env: dict[str, str], postgres_clean: None) -> Iterator[str]:
    url = server_env["FRONTDESK_PUBLIC_URL"]
    process = subprocess.Popen(
        [FRONTDESK, "serve"], env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"frontdesk serve exited: {output}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("frontdesk serve did not become healthy")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def postgres_clean(database_url: str | None) -> None:
    if database_url:
        from tests.conftest import _run_in_thread, _truncate_postgres

        _run_in_thread(lambda: _truncate_postgres(database_url))


def test_cli_and_server_end_to_end(server: str, server_env: dict[str, str], docs_dir: Path) -> None:
    created = cli(
        server_env, "site", "create", "--name", "Shop", "--origin", "https://shop.example", "--json"
    )
    assert created.returncode == 0, created.stderr
    site = json.loads(created.stdout)
    assert site["site_id"].startswith("site_") and site["secret"].startswith("fds_")
    assert site["secret"] not in created.stderr

    added = cli(server_env, "kb", "add", "--site", site["site_id"], str(docs_dir), "--json")
    assert added.returncode == 0, added.stderr
    assert len(json.loads(added.stdout)["documents"]) == 2

    origin = {"Origin": "https://shop.example"}
    with httpx.Client(base_url=server, headers=origin, timeout=10) as http:
        assert http.get("/ready").status_code == 200
        session = http.post("/api/widget/v1/sessions", json={"site_id": site["site_id"]})
        assert session.status_code == 201, session.text
        auth = {"Authorization": f"Bearer {session.json()['access_token']}"}
        conversation = http.post("/api/widget/v1/conversations", headers=auth).json()
        response = http.post(
            f"/api/widget/v1/conversations/{conversation['id']}/messages",
            headers={**auth, "Accept": "text/event-stream"},
            json={"client_id": "c-1", "text": "How can I return an item?"},
        )
        events = parse_sse(response.text)
        answer = [e for name, e in events if name == "message"][-1]["message"]
        assert "thirty days" in answer["text"]
        assert answer["citations"][0]["title"] == "Shipping › Returns"
        assert http.get("/api/v1/openapi.json").json()["info"]["title"] == "FrontDesk"


def test_cli_bad_input(server_env: dict[str, str], postgres_clean: None) -> None:
    assert cli(server_env, "migrate").returncode == 0
    bad_origin = cli(server_env, "site", "create", "--name", "X", "--origin", "ftp://x", "--json")
    assert bad_origin.returncode == 2 and "invalid_request" in bad_origin.stderr
    bad_json = cli(
        server_env,
        "site",
        "create",
        "--name",
        "X",
        "--origin",
        "https://x.example",
        "--responder",
        "{nope",
        "--json",
    )
    assert bad_json.returncode == 2 and "invalid_request" in bad_json.stderr
    bad_responder = cli(
        server_env,
        "site",
        "create",
        "--name",
        "X",
        "--origin",
        "https://x.example",
        "--responder",
        '{"kind": "oracle"}',
        "--json",
    )
    assert bad_responder.returncode == 2 and "invalid_request" in bad_responder.stderr
    missing_site = cli(server_env, "kb", "add", "--site", "site_nope", "README.md")
    assert missing_site.returncode == 2 and "site_not_found" in missing_site.stderr


def test_cli_apikey_and_admin(server_env: dict[str, str], postgres_clean: None) -> None:
    assert cli(server_env, "migrate").returncode == 0
    key = cli(server_env, "apikey", "create", "--scopes", "read,events", "--json")
    assert key.returncode == 0, key.stderr
    body = json.loads(key.stdout)
    assert body["key"].startswith("fd_") and body["scopes"] == ["events", "read"]
    assert cli(server_env, "apikey", "create", "--scopes", "root").returncode == 2
    admin = cli(
        server_env,
        "admin",
        "create",
        "--email",
        "Owner@Shop.example",
        "--password",
        "correct horse battery",
        "--json",
    )
    assert admin.returncode == 0, admin.stderr
    assert json.loads(admin.stdout)["email"] == "owner@shop.example"
    again = cli(
        server_env,
        "admin",
        "create",
        "--email",
        "owner@shop.example",
        "--password",
        "correct horse battery",
    )
    assert again.returncode == 2 and "conflict" in again.stderr
    weak = cli(server_env, "admin", "create", "--email", "a@b.example", "--password", "short")
    assert weak.returncode == 2 and "invalid_request" in weak.stderr
