"""The `frontdesk` command: serve, migrate, and the admin tasks of the public contract.

Commands that print machine-readable output do so with `--json` (one JSON object on stdout);
secrets appear only in that output, once, and never in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
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


def _freeze_startup_objects() -> None:
    """Keep the garbage collector off what startup built (modules, schemas, the app: some 240,000
    objects that live as long as the process). Unfrozen, every full collection walks them all and
    stops the event loop for about half a second; a webhook benchmark run had 9 (ADR 0017). Run
    before serving and again once the app's startup is done (services, caches, the demo site's
    knowledge): after that second freeze a full collection under chat load took 7 ms, not 15–25
    (ADR 0026)."""
    gc.collect()
    gc.freeze()


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
    served = create_app(settings, after_startup=_freeze_startup_objects)
    config = uvicorn_config(served, settings, host=bind_host, port=bind_port)
    _freeze_startup_objects()
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
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.md, .txt, .html, .pdf).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Add documents to a site's knowledge base (re-adding a changed file re-indexes it).

    Each file is ingested as an upload through the API is, by the same job, run here: a progress
    bar per file, then a summary. Exits 1 when a file failed."""
    from frontdesk.knowledge.local_files import collect_files

    try:
        files = collect_files(paths)
    except FileNotFoundError as exc:
        console.print(f"[red]error[/red] not_found: {exc}")
        raise typer.Exit(2) from exc
    results = _run(lambda settings: _ingest_files(settings, site, files, show=not as_json))
    if as_json:
        sys.stdout.write(json.dumps(_kb_report(site, results)) + "\n")
    else:
        _print_kb_summary(results)
    if any(r.status not in ("done", "duplicate") for r in results):
        raise typer.Exit(1)


async def _ingest_files(settings: Settings, site: str, files: list[Any], *, show: bool) -> Any:
    import logging

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from frontdesk.db import Database
    from frontdesk.knowledge.local_files import LocalFile, ingest_files
    from frontdesk.queries.sites import get_site

    # pypdf warns on stderr about each malformed PDF; the summary says why a file failed.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    db = Database(settings)
    try:
        async with db.read_scope() as session:
            await get_site(session, site)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[stage]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, disable=not show) as progress:

            def observe(file: LocalFile) -> Any:
                task = progress.add_task(file.source, total=None, stage="reading", count="")

                def step(stage: str, done: int, total: int) -> None:
                    count = f"{done}/{total} chunks" if total else ""
                    if total:
                        progress.update(task, completed=done, total=total)
                    if stage in ("done", "duplicate", "failed"):
                        progress.update(task, total=1, completed=1)
                    progress.update(task, stage=stage, count=count)

                return step

            return await ingest_files(
                db, site, files, lease_s=settings.job_lease_s, observer=observe
            )
    finally:
        await db.dispose()


def _kb_report(site: str, results: list[Any]) -> dict[str, Any]:
    files = [
        {
            "path": r.file.path.as_posix(),
            "source": r.file.source,
            "status": r.status,
            "outcome": r.outcome,
            "ingestion_id": r.ingestion_id,
            "document_id": r.document_id,
            "title": r.title,
            "chunks": r.chunks,
            "seconds": r.seconds,
            "error": r.error,
        }
        for r in results
    ]
    counts = {s: sum(1 for r in results if r.status == s) for s in ("done", "duplicate", "failed")}
    documents = [  # the documents the files are now in the knowledge base as
        {"id": r.document_id, "title": r.title, "chunks": r.chunks}
        for r in results
        if r.status in ("done", "duplicate") and r.document_id
    ]
    return {"site_id": site, "files": files, "summary": counts, "documents": documents}


def _print_kb_summary(results: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="Knowledge base", title_justify="left")
    for column in ("file", "result", "chunks", "time"):
        table.add_column(column, justify="right" if column in ("chunks", "time") else "left")
    for r in results:
        if r.status == "done":
            result = f"[green]indexed[/green] ({r.outcome})"
        elif r.status == "duplicate":
            same = "unchanged" if r.outcome == "unchanged" else f"same text as {r.document_id}"
            result = f"[yellow]duplicate[/yellow]: {same}"
        else:
            result = f"[red]failed[/red]: {r.error}"
        table.add_row(r.file.source, result, str(r.chunks), f"{r.seconds:.2f} s")
    console.print(table)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("done", "duplicate")}
    failed = len(results) - sum(counts.values())
    chunks = sum(r.chunks for r in results if r.status == "done")
    console.print(
        f"{counts['done']} indexed ({chunks} chunks), {counts['duplicate']} duplicate, "
        f"{failed} failed, in {sum(r.seconds for r in results):.2f} s"
    )


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
    from frontdesk.observability.sentry import init_sentry
    from frontdesk.services import Services

    settings = load_settings(run_worker=True)
    configure_logging(settings.log_level)
    init_sentry(settings)  # job failures logged at error level reach Sentry too

    async def work() -> None:
        await _migrate(settings)
        services = Services.build(settings)
        await services.start()
        _freeze_startup_objects()
        console.print(f"worker {services.worker.id} running; Ctrl-C stops it")
        try:
            await asyncio.Event().wait()
        finally:
            await services.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work())
