"""Recording what responders did wrong: `responder.failed` and `responder.circuit_opened`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.events.recorder import record_event


def do_record_responder_failure(
    session: AsyncSession,
    *,
    site_id: str,
    conversation_id: str,
    responder: str,
    kind: str,
    message: str,
) -> None:
    record_event(
        session,
        "responder.failed",
        site_id=site_id,
        data={
            "responder": responder,
            "kind": kind,
            "message": message[:500],
            "conversation_ref": conversation_id,
        },
    )


def do_record_circuit_opened(session: AsyncSession, *, site_id: str, responder: str) -> None:
    record_event(
        session, "responder.circuit_opened", site_id=site_id, data={"responder": responder}
    )
