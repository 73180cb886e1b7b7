"""The `frontdesk` command: serve, migrate, and the admin tasks of the public contract.

Commands that print machine-readable output do so with `--json` (one JSON object on stdout);
secrets appear only in that output, once, and never in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from frontdesk.config import Settings, load_settings
from frontdesk.errors import AppError

app = typer.Typer(help="FrontDesk: a self-hosted AI front desk for websites.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator accounts.", no_args_is_help=True)
site_app = typer.Typer(help="Sites (one embedding of the widget each).", no_args_is_help=True)
kb_app = typer.Typer(help="Knowledge base.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the REST API.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(site_app, name="site")
app.add_typer(kb_app, name="kb")
app.add_typer(apikey_app, name="apikey")

console = Console(stderr=True)
T = TypeVar("T")


def _run(work: Callable[[Settings], Coroutine[Any, Any, T]], *, migrate: bool = True) -> T:
    """Run one command's work; the schema is brought up to date first (as `serve` does)."""
    settings = load_settings()

    async def migrated_then_work() -> T:
        if migrate:
            await _migrate(settings)
        return await work(settings)

    try:
        return asyncio.run(migrated_then_work())
    except AppError as exc:
        console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(2) from exc


def _emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        for key, value in data.items():
            console.print(f"[bold]{key}[/bold]: {value}")


async def _migrate(settings: Settings) -> str | None:
    from frontdesk.db import Database
    from frontdesk.migrate import current_revision, upgrade

    db = Database(settings)
    try:
        await upgrade(db)
        return await current_revision(db)
    finally:
        await db.dispose()


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest."""
    revision = _run(_migrate, migrate=False)
    console.print(f"database at revision {revision}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
    demo: Annotated[bool, typer.Option(help="Create the demo site and its knowledge.")] = False,
) -> None:
    """Migrate the database, then serve the app."""
    import uvicorn

    from frontdesk.logs import configure_logging
    from frontdesk.main import create_app
    from frontdesk.server import uvicorn_config

    overrides: dict[str, Any] = {"seed_demo": True} if demo else {}
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)
    asyncio.run(_migrate(settings))
    bind_host, bind_port = host or settings.host, port or settings.port
    url = settings.public_url
    console.print(
        f"FrontDesk on http://{bind_host}:{bind_port}\n"
        f"  demo page  {url}/demo\n  dashboard  {url}/dashboard\n  API docs   {url}/docs"
    )
    config = uvicorn_config(create_app(settings), settings, host=bind_host, port=bind_port)
    uvicorn.Server(config).run()


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
    role: Annotated[str, typer.Option(help="owner, admin, operator or viewer.")] = "owner",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an operator account."""
    secret = password or getpass.getpass("Password: ")

    async def work(settings: Settings) -> dict[str, Any]:
        from frontdesk.actions.operators import do_create_operator
        from frontdesk.db import Database

        db = Database(settings)
        try:
            async with db.session_scope() as session:
                operator = await do_create_operator(
                    session, email=email, password=secret, role=role
                )
            return {"id": operator.id, "email": operator.email, "role": operator.role}
        finally:
            await db.dispose()

    _emit(_run(work), as_json)


@site_app.command("create")
def site_create(
    name: Annotated[str, typer.Option(help="A name for people.")],
    origin: Annotated[list[str], typer.Option(help="Allowed origin (repeatable).")],
    responder: Annotated[str | None, typer.Option(help="Responder JSON.")] = None,
    greeting: Annotated[str, typer.Option(help="First message visitors see.")] = "",
    locale: Annotated[str, typer.Option(help="en or ru.")] = "en",
    require_identity: Annotated[
        bool, typer.Option(help="Only verified visitors may chat.")
    ] = False,
    allow_native_clients: Annotated[
        bool, typer.Option(help="Accept widget calls without an Origin (mobile apps).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a site; prints its id and its secret (shown once)."""
    try:
        responder_json = json.loads(responder) if responder else None
    except json.JSONDecodeError as exc:
        console.print(f"[red]error[/red] invalid_request: --responder is not JSON ({exc.msg})")
        raise typer.Exit(2) from exc

    async def work(settings: Settings) -> dict[str, Any]:
        from frontdesk.actions.sites import do_create_site
        from frontdesk.db import Database
        from frontdesk.security.keys import SecretBox

        db = Database(settings)
        try:
            async with db.session_scope() as session:
                created = await do_create_site(
                    session,
                    SecretBox(settings.server_key),
                    name=name,
                    origins=origin,
                    responder=responder_json,
                    greeting=greeting,
                    locale=locale,
                    options={
                        "require_identity": require_identity,
                        "allow_native_clients": allow_native_clients,
                    },
                )
            return {
                "site_id": created.site.id,
                "secret": created.secret,
                "name": created.site.name,
                "allowed_origins": created.site.allowed_origins,
                "embed": f'<script src="{settings.public_url}/widget.js" '
                f'data-site-id="{created.site.id}" async></script>',
            }
        finally:
            await db.dispose()

    _emit(_run(work), as_json)


@kb_app.command("add")
def kb_add(
    site: Annotated[str, typer.Option(help="Site id.")],
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.md, .txt, .html).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Add documents to a site's knowledge base (re-adding a file re-indexes it)."""
    from rich.progress import Progress

    from frontdesk.knowledge.ingest import CONTENT_TYPES, UnsupportedDocument, read_document

    # Each file is known by its path under the folder given (`docs/guide/index.md`), so two
    # files with the same name in different folders stay two documents.
    files: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.suffix.lower() in CONTENT_TYPES:
                    files.append((found, (Path(path.name) / found.relative_to(path)).as_posix()))
        elif path.exists():
            files.append((path, path.as_posix()))
        else:
            console.print(f"[red]error[/red] not_found: {path} does not exist")
            raise typer.Exit(2)

    async def work(settings: Settings) -> dict[str, Any]:
        from frontdesk.actions.knowledge import do_add_document
        from frontdesk.db import Database
        from frontdesk.queries.sites import get_site

        db = Database(settings)
        added: list[dict[str, Any]] = []
        try:
            async with db.read_scope() as session:
                await get_site(session, site)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("indexing", total=len(files))
                for file, source in files:
                    try:
                        document = read_document(file, source=source)
                    except UnsupportedDocument as exc:
                        console.print(f"[yellow]skipped[/yellow] {exc}")
                        progress.advance(task)
                        continue
                    async with db.session_scope() as session:
                        row = await do_add_document(session, site_id=site, document=document)
                    added.append({"id": row.id, "title": row.title, "chunks": row.chunk_count})
                    progress.advance(task)
            return {"site_id": site, "documents": added}
        finally:
            await db.dispose()

    _emit(_run(work), as_json)


@apikey_app.command("create")
def apikey_create(
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, admin, events.")],
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    site: Annotated[str | None, typer.Option(help="Limit the key to one site.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API key; prints the key once."""

    async def work(settings: Settings) -> dict[str, Any]:
        from frontdesk.actions.apikeys import do_create_api_key
        from frontdesk.db import Database

        db = Database(settings)
        try:
            async with db.session_scope() as session:
                created = await do_create_api_key(
                    session, scopes=[s.strip() for s in scopes.split(",")], name=name, site_id=site
                )
            return {
                "key": created.key,
                "id": created.api_key.id,
                "prefix": created.api_key.prefix,
                "scopes": created.api_key.scopes,
                "site_id": created.api_key.site_id,
            }
        finally:
            await db.dispose()

    _emit(_run(work), as_json)


@app.command()
def worker() -> None:
    """Run the job worker alone (webhook deliveries and other background work)."""
    from frontdesk.logs import configure_logging
    from frontdesk.services import Services

    settings = load_settings(run_worker=True)
    configure_logging(settings.log_level)

    async def work() -> None:
        await _migrate(settings)
        services = Services.build(settings)
        await services.start()
        console.print(f"worker {services.worker.id} running; Ctrl-C stops it")
        try:
            await asyncio.Event().wait()
        finally:
            await services.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work())
