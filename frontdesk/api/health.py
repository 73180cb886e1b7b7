"""Liveness and readiness.

`/health` answers while the process runs. `/ready` answers 200 only when the database is
reachable, its schema is at the migrations' head, and the broker is connected; otherwise 503 with
the failing checks, so a load balancer stops sending traffic.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from frontdesk.api.deps import ServicesDep
from frontdesk.migrate import current_revision, head_revision
from frontdesk.services import Services

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def readiness_checks(services: Services) -> dict[str, Any]:
    """Each check's result (`{"ok": bool, …}`); `/ready` and `/metrics` report the same."""
    checks: dict[str, Any] = {}
    try:
        revision = await current_revision(services.db)
        head = head_revision()
        checks["database"] = {"ok": True}
        checks["migrations"] = {"ok": revision == head, "current": revision, "head": head}
    except Exception as exc:  # readiness reports failures, it never raises them
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    checks["broker"] = {"ok": services.broker.healthy}
    if services.settings.run_worker:
        checks["worker"] = {"ok": services.worker.alive, "processed": services.worker.processed}
    return checks


@router.get("/ready", summary="Readiness")
async def ready(services: ServicesDep) -> JSONResponse:
    checks = await readiness_checks(services)
    ok = all(check.get("ok") for check in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
    )
