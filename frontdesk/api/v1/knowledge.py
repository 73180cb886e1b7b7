"""Knowledge documents (`/api/v1/knowledge`): add text, list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from frontdesk.actions.knowledge import do_add_document, do_delete_document
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Admin, Reader
from frontdesk.api.v1.schemas import DocumentCreate, DocumentList, DocumentOut
from frontdesk.errors import not_found
from frontdesk.knowledge.ingest import parse_document
from frontdesk.models import KnowledgeDocument
from frontdesk.queries.sites import get_site, site_not_found

router = APIRouter(prefix="/knowledge", tags=["knowledge"])


def document_out(row: KnowledgeDocument) -> DocumentOut:
    return DocumentOut(
        id=row.id,
        site_id=row.site_id,
        title=row.title,
        source=row.source,
        url=row.url,
        content_type=row.content_type,
        chunk_count=row.chunk_count,
        updated_at=row.updated_at.isoformat(),
    )


@router.get("", response_model=DocumentList, summary="List a site's documents")
async def list_documents(
    principal: Reader,
    services: ServicesDep,
    site_id: Annotated[str, Query(max_length=40)],
) -> DocumentList:
    if not principal.may_see_site(site_id):
        raise site_not_found()
    async with services.db.read_scope() as session:
        stmt = (
            select(KnowledgeDocument)
            .where(KnowledgeDocument.site_id == site_id)
            .order_by(KnowledgeDocument.title)
        )
        rows = (await session.execute(stmt)).scalars().all()
    return DocumentList(documents=[document_out(r) for r in rows])


@router.post("", status_code=201, response_model=DocumentOut, summary="Add or re-index a document")
async def add_document(
    body: DocumentCreate, principal: Admin, services: ServicesDep
) -> DocumentOut:
    """Index text into a site's knowledge base; the same `source` again re-indexes it."""
    if not principal.may_see_site(body.site_id):
        raise site_not_found()
    document = parse_document(
        body.text,
        content_type=body.content_type,
        source=body.source or body.title,
        fallback_title=body.title,
    )
    async with services.db.session_scope() as session:
        await get_site(session, body.site_id)
        row = await do_add_document(session, site_id=body.site_id, document=document, url=body.url)
        return document_out(row)


@router.delete("/{document_id}", status_code=204, summary="Delete a document")
async def delete_document(document_id: str, principal: Admin, services: ServicesDep) -> Response:
    async with services.db.session_scope() as session:
        row = await session.get(KnowledgeDocument, document_id) if len(document_id) <= 40 else None
        if row is None or not principal.may_see_site(row.site_id):
            raise not_found("No such document.")
        await do_delete_document(session, row, actor=principal)
    return Response(status_code=204)
