"""Knowledge documents (`/api/v1/knowledge`): upload (text or a file), follow the ingestion,
list, delete.

Uploads are accepted at once (202) and indexed by the `knowledge.ingest` job; the response is
the ingestion, whose `Location` is `/api/v1/knowledge/ingestions/{id}`. What can be refused
cheaply is refused here, with the contract's codes: a type that is not Markdown, text, HTML or
PDF (415 `unsupported_media_type`), too large (413 `payload_too_large`), empty or not what it
claims to be (422 `invalid_request`). What is known only by reading the file (a broken PDF, no
text) ends the ingestion `failed` with the reason.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from frontdesk.actions.ingestions import check_upload, do_queue_ingestion, upload_error
from frontdesk.actions.knowledge import do_delete_document
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Admin, Reader
from frontdesk.api.v1.schemas import (
    DocumentCreate,
    DocumentList,
    DocumentOut,
    IngestionList,
    IngestionOut,
    IngestionProgress,
)
from frontdesk.errors import AppError, not_found
from frontdesk.knowledge.ingest import (
    CONTENT_TYPES,
    UnsupportedDocument,
    content_type_of,
    max_bytes,
)
from frontdesk.models import KnowledgeDocument, utcnow
from frontdesk.queries.ingestions import IngestionView, get_ingestion, list_ingestions
from frontdesk.queries.sites import get_site, site_not_found
from frontdesk.security.principals import Principal
from frontdesk.services import Services

router = APIRouter(prefix="/knowledge", tags=["knowledge"])

_UPLOAD_TYPES = sorted(set(CONTENT_TYPES.values()))
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file's bytes (not a form). Its type is the `Content-Type` when that "
        "is one of these, else the extension of `name`.",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _UPLOAD_TYPES},
    }
}


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


def ingestion_out(view: IngestionView) -> IngestionOut:
    return IngestionOut(
        id=view.id,
        site_id=view.site_id,
        source=view.source,
        title=view.title,
        url=view.url,
        content_type=view.content_type,
        size=view.size,
        status=view.status,
        outcome=view.outcome,
        progress=IngestionProgress(stage=view.stage, done=view.done, total=view.total),
        document_id=view.document_id,
        chunk_count=view.chunk_count,
        error=view.error,
        created_at=view.created_at.isoformat(),
        started_at=view.started_at.isoformat() if view.started_at else None,
        finished_at=view.finished_at.isoformat() if view.finished_at else None,
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


async def _queue(
    services: Services,
    principal: Principal,
    response: Response,
    *,
    site_id: str,
    content: bytes,
    name: str,
    declared_type: str | None,
    title: str | None,
    url: str | None,
) -> IngestionOut:
    if not principal.may_see_site(site_id):
        raise site_not_found()
    try:
        upload = check_upload(content, name=name, declared_type=declared_type, title=title, url=url)
    except UnsupportedDocument as exc:
        raise upload_error(exc) from exc
    async with services.db.session_scope() as session:
        await get_site(session, site_id)
        row, _ = await do_queue_ingestion(session, site_id=site_id, upload=upload, now=utcnow())
    async with services.db.read_scope() as session:
        view = await get_ingestion(session, row.id)
    assert view is not None
    response.headers["Location"] = (
        f"{services.settings.public_url}/api/v1/knowledge/ingestions/{view.id}"
    )
    return ingestion_out(view)


@router.post(
    "",
    status_code=202,
    response_model=IngestionOut,
    summary="Add or re-index a document given as text",
)
async def add_document(
    body: DocumentCreate, principal: Admin, services: ServicesDep, response: Response
) -> IngestionOut:
    """Queue text for indexing into a site's knowledge base; the same `source` again re-indexes
    it. Follow the returned ingestion for its progress and result."""
    return await _queue(
        services,
        principal,
        response,
        site_id=body.site_id,
        content=body.text.encode(),
        name=body.source or body.title,
        declared_type=body.content_type,
        title=body.title,
        url=body.url,
    )


@router.post(
    "/files",
    status_code=202,
    response_model=IngestionOut,
    summary="Upload a file (Markdown, text, HTML or PDF) to index",
    openapi_extra=_UPLOAD_BODY,
)
async def upload_file(
    request: Request,
    principal: Admin,
    services: ServicesDep,
    response: Response,
    site_id: Annotated[str, Query(max_length=40)],
    name: Annotated[
        str,
        Query(
            min_length=1,
            max_length=1000,
            description="The file's name or path: the document's source within the site.",
        ),
    ],
    title: Annotated[str | None, Query(min_length=1, max_length=300)] = None,
    url: Annotated[str | None, Query(max_length=1000, pattern=r"^https?://")] = None,
) -> IngestionOut:
    """The request body is the file itself. Re-uploading a file under the same `name`
    re-indexes it when its text changed."""
    if not principal.may_see_site(site_id):
        raise site_not_found()
    declared = request.headers.get("content-type")
    try:
        limit = max_bytes(content_type_of(name, declared))
    except UnsupportedDocument as exc:
        raise upload_error(exc) from exc
    content = bytearray()
    async for piece in request.stream():
        content += piece
        if len(content) > limit:
            raise AppError("payload_too_large", f"{name}: larger than {limit} bytes.", 413)
    return await _queue(
        services,
        principal,
        response,
        site_id=site_id,
        content=bytes(content),
        name=name,
        declared_type=declared,
        title=title,
        url=url,
    )


@router.get(
    "/ingestions", response_model=IngestionList, summary="A site's recent ingestions, newest first"
)
async def ingestions(
    principal: Reader,
    services: ServicesDep,
    site_id: Annotated[str, Query(max_length=40)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> IngestionList:
    if not principal.may_see_site(site_id):
        raise site_not_found()
    async with services.db.read_scope() as session:
        views = await list_ingestions(session, site_id, limit=limit)
    return IngestionList(ingestions=[ingestion_out(v) for v in views])


@router.get(
    "/ingestions/{ingestion_id}",
    response_model=IngestionOut,
    summary="An ingestion: its status, progress and resulting document",
)
async def ingestion(ingestion_id: str, principal: Reader, services: ServicesDep) -> IngestionOut:
    async with services.db.read_scope() as session:
        view = await get_ingestion(session, ingestion_id)
    if view is None or not principal.may_see_site(view.site_id):
        raise not_found("No such ingestion.")
    return ingestion_out(view)


@router.delete("/{document_id}", status_code=204, summary="Delete a document")
async def delete_document(document_id: str, principal: Admin, services: ServicesDep) -> Response:
    async with services.db.session_scope() as session:
        row = await session.get(KnowledgeDocument, document_id) if len(document_id) <= 40 else None
        if row is None or not principal.may_see_site(row.site_id):
            raise not_found("No such document.")
        await do_delete_document(session, row, actor=principal)
    return Response(status_code=204)
