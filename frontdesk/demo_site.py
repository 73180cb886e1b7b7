"""The demo site `make run` serves: a site whose knowledge base is FrontDesk's own documentation.

Idempotent: the site is created once, and documents are re-indexed only when their text changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from frontdesk.actions.knowledge import do_add_document
from frontdesk.actions.sites import do_create_site
from frontdesk.knowledge.ingest import read_document
from frontdesk.models import Site
from frontdesk.services import Services

DEMO_SITE_ID = "site_demo"
log = logging.getLogger(__name__)


def demo_documents() -> list[tuple[Path, str]]:
    """The README and docs/ (not the decisions, not the benchmark tables) of the source tree
    FrontDesk runs from (if it runs from one), each
    with its path in that tree as the document's source."""
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        docs = root / "docs"
        if docs.is_dir():
            files = sorted(
                p
                for p in docs.rglob("*.md")
                if "decisions" not in p.parts and p.name != "benchmarks.md"
            )
            readme = root / "README.md"
            found = ([readme] if readme.exists() else []) + files
            return [(path, path.relative_to(root).as_posix()) for path in found]
    return []


async def ensure_demo_site(services: Services) -> str:
    url = urlsplit(services.settings.public_url)
    origins = sorted(
        {f"{url.scheme}://{url.netloc}", "http://127.0.0.1:8000", "http://localhost:8000"}
    )
    async with services.db.session_scope() as session:
        if await session.get(Site, DEMO_SITE_ID) is None:
            await do_create_site(
                session,
                services.box,
                name="FrontDesk demo",
                origins=origins,
                greeting="Hi! Ask me anything about FrontDesk.",
                site_id=DEMO_SITE_ID,
            )
    for path, source in demo_documents():
        document = read_document(path, source=source)
        async with services.db.session_scope() as session:
            await do_add_document(session, site_id=DEMO_SITE_ID, document=document)
    services.sites.invalidate(DEMO_SITE_ID)
    return DEMO_SITE_ID
