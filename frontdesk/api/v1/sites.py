"""Sites (`/api/v1/sites`): create, list, read, change, rotate the secret, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from frontdesk.actions.sites import (
    do_create_site,
    do_delete_site,
    do_rotate_site_secret,
    do_update_site,
)
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Admin, Reader
from frontdesk.api.v1.schemas import (
    SiteCreate,
    SiteCreated,
    SiteList,
    SiteOut,
    SiteSecret,
    SiteUpdate,
)
from frontdesk.errors import forbidden
from frontdesk.models import Site
from frontdesk.queries.sites import get_site, site_not_found
from frontdesk.responders.config import public_responder
from frontdesk.security.principals import Principal

router = APIRouter(prefix="/sites", tags=["sites"])


def site_out(site: Site) -> SiteOut:
    return SiteOut(
        id=site.id,
        name=site.name,
        allowed_origins=list(site.allowed_origins),
        greeting=site.greeting,
        locale=site.locale,
        responder=public_responder(site.responder),
        appearance=site.appearance,
        quick_actions=list(site.quick_actions),
        offers=list(site.offers),
        limits=site.limits,
        options=site.options,
        created_at=site.created_at.isoformat(),
        updated_at=site.updated_at.isoformat(),
    )


def _visible(principal: Principal, site_id: str) -> None:
    if not principal.may_see_site(site_id):
        raise site_not_found()


@router.get("", response_model=SiteList, summary="List sites")
async def list_sites(principal: Reader, services: ServicesDep) -> SiteList:
    async with services.db.read_scope() as session:
        stmt = select(Site).order_by(Site.created_at)
        if principal.site_id:
            stmt = stmt.where(Site.id == principal.site_id)
        sites = (await session.execute(stmt)).scalars().all()
    return SiteList(sites=[site_out(s) for s in sites])


@router.post("", status_code=201, response_model=SiteCreated, summary="Create a site")
async def create_site(body: SiteCreate, principal: Admin, services: ServicesDep) -> SiteCreated:
    """Create a site. The response carries the site secret, shown only this once."""
    if principal.site_id:
        raise forbidden("A key limited to one site cannot create sites.")
    async with services.db.session_scope() as session:
        created = await do_create_site(
            session,
            services.box,
            name=body.name,
            origins=body.allowed_origins,
            responder=body.responder,
            greeting=body.greeting,
            locale=body.locale,
            options=body.options,
            limits=body.limits,
            actor=principal,
        )
    return SiteCreated(**site_out(created.site).model_dump(), secret=created.secret)


@router.get("/{site_id}", response_model=SiteOut, summary="Read a site")
async def read_site(site_id: str, principal: Reader, services: ServicesDep) -> SiteOut:
    _visible(principal, site_id)
    async with services.db.read_scope() as session:
        return site_out(await get_site(session, site_id))


@router.patch("/{site_id}", response_model=SiteOut, summary="Change a site")
async def update_site(
    site_id: str, body: SiteUpdate, principal: Admin, services: ServicesDep
) -> SiteOut:
    _visible(principal, site_id)
    async with services.db.session_scope() as session:
        site = await get_site(session, site_id)
        await do_update_site(
            session, services.box, site, body.model_dump(exclude_unset=True), actor=principal
        )
        result = site_out(site)
    services.sites.invalidate(site_id)
    return result


@router.post("/{site_id}/secret", response_model=SiteSecret, summary="Rotate the site secret")
async def rotate_secret(site_id: str, principal: Admin, services: ServicesDep) -> SiteSecret:
    """Replace the site secret; identities signed with the old one stop verifying at once."""
    _visible(principal, site_id)
    async with services.db.session_scope() as session:
        site = await get_site(session, site_id)
        secret = await do_rotate_site_secret(session, services.box, site, actor=principal)
    services.sites.invalidate(site_id)
    return SiteSecret(secret=secret)


@router.delete("/{site_id}", status_code=204, summary="Delete a site and all its data")
async def delete_site(site_id: str, principal: Admin, services: ServicesDep) -> Response:
    _visible(principal, site_id)
    async with services.db.session_scope() as session:
        await do_delete_site(session, await get_site(session, site_id), actor=principal)
    services.sites.invalidate(site_id)
    return Response(status_code=204)
