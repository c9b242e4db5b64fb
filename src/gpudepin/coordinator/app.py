"""The FastAPI application factory: wires settings, database, blob store and loops."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpudepin import __version__
from gpudepin.coordinator import store
from gpudepin.coordinator.blobs import BlobStore, Kept
from gpudepin.coordinator.db import make_engine, migrate, reader
from gpudepin.coordinator.signals import WorkSignal
from gpudepin.core.errors import GpudepinError
from gpudepin.settings import CoordinatorSettings

log = logging.getLogger("gpudepin.coordinator")
T = TypeVar("T")


@dataclass
class Runtime:
    """What every request handler and loop shares; built once per app."""

    settings: CoordinatorSettings
    engine: Engine
    blobs: BlobStore
    clock: Callable[[], float] = time.time
    # wakes long-polling agents when work appears (same process; other processes poll)
    work: WorkSignal = field(default_factory=WorkSignal)  # tasks, checks, proofs
    offers: WorkSignal = field(default_factory=WorkSignal)  # orders to bid on, leases
    chain: Any = None  # a settlement.ChainLink when the coordinator settles on chain
    # per-process state of duties, by domain (e.g. speculation's duration windows)
    caches: dict[str, Any] = field(default_factory=dict)
    reader: Engine = field(init=False)
    # how late the event loop runs what is due (a decaying maximum, seconds): how far the
    # coordinator lags behind its requests (see watch_lag)
    lag_s: float = 0.0
    inline_db: bool = field(init=False)
    db_threads: ThreadPoolExecutor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.reader = reader(self.engine)  # for blocks that only read: never wait on writers
        inline = self.settings.inline_db
        self.inline_db = self.engine.dialect.name == "sqlite" if inline is None else inline
        if not self.inline_db:
            self.db_threads = ThreadPoolExecutor(
                self.settings.db_threads, thread_name_prefix="gpudepin-db"
            )

    async def quick(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn``, a short database call with no file or network work, where it costs
        least. On SQLite that is right here on the event loop: a statement takes
        microseconds in this process, while the hop to the thread pool and back, and the
        handoffs of the GIL among its threads, cost more than the statements themselves
        (the load benchmark dispatched about a third more tasks per CPU-second this way).
        On PostgreSQL a call waits for round trips, during which the loop should serve
        other requests, so by default it runs in a few threads of its own
        (``settings.db_threads``), not in the pool of forty that runs blocking endpoints:
        forty threads handing the GIL to one another cost 2.35 ms of the coordinator's CPU
        a task in the saturated load window, two threads 1.12 ms, for 1.6 x the tasks/s
        (docs/benchmarks/load.md). ``settings.inline_db`` decides when set.
        """
        if self.db_threads is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.db_threads, fn, *args)

    async def watch_lag(self, every_s: float = 0.1) -> None:
        """Keep ``lag_s``: a sleep of ``every_s`` that ends later than asked was kept
        waiting behind other work on the loop, as every request is."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(every_s)
            late = loop.time() - asked - every_s
            self.lag_s = max(late, self.lag_s * 0.9)  # a spike fades in about a second

    def notify_work(self, tasks: int | None = None) -> None:
        """Wake long polls: as many task polls as ``tasks`` new tasks, or every poll."""
        self.work.notify(tasks)
        if tasks is None:
            self.offers.notify()


def _error(status: int, code: str, message: str, hint: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message, "hint": hint}}
    )


def _kept_blobs(engine: Engine) -> Kept:
    """Read the blobs the database keeps (results handed in inline)."""
    read = reader(engine)

    def kept(shas: list[str]) -> dict[str, bytes]:
        with read.connect() as conn:
            return store.small_blobs(conn, shas)

    return kept


def create_app(
    settings: CoordinatorSettings, *, run_loops: bool = True, clock: Callable[[], float] = time.time
) -> FastAPI:
    """Build the coordinator. ``run_loops=False`` leaves background work to the caller,
    the watch on the loop's lag included: a caller that drives the duties on its own
    clock (the tests) must not have speculation paused by how busy its machine is."""
    from gpudepin.coordinator import loops, settlement

    engine = make_engine(settings.database_url)
    migrate(engine)
    blobs = BlobStore(settings.blob_dir, settings.max_upload_bytes, kept=_kept_blobs(engine))
    rt = Runtime(settings, engine, blobs, clock)
    rt.chain = settlement.connect(settings, clock())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loops.resume(rt)
        stop = threading.Event()
        watcher, worker = None, None
        if run_loops:
            watcher = asyncio.create_task(rt.watch_lag())
            worker = threading.Thread(
                target=loops.run_forever, args=(rt, stop), name="gpudepin-loops", daemon=True
            )
            worker.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            stop.set()
            rt.notify_work()
            if worker is not None:
                worker.join(timeout=10)
            if rt.db_threads is not None:
                rt.db_threads.shutdown()
            engine.dispose()

    app = FastAPI(
        title="gpudepin coordinator",
        version=__version__,
        lifespan=lifespan,
        description="Buyers submit work, providers take it, the ledger pays verified work.",
        # the coordinator's metrics are Prometheus' (/metrics); FastAPI's own OpenTelemetry
        # hooks looked up the tracer providers in the environment on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.rt = rt

    @app.exception_handler(GpudepinError)
    async def _domain_error(_: Request, exc: GpudepinError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(
            422,
            "invalid_input",
            f"{where or 'request'}: {first.get('msg', 'invalid')}",
            "See the API schema at /docs.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), "See the API schema at /docs.")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _error(
            500,
            "internal",
            "the coordinator hit an unexpected error",
            "It is logged on the coordinator; try again.",
        )

    for router in api_routers():
        app.include_router(router)
    return app


def api_routers() -> list[APIRouter]:
    """Every domain's ``/v1`` router; a new domain adds its module here."""
    from gpudepin.coordinator import (
        api,
        api_ai,
        api_chain,
        api_disputes,
        api_enterprise,
        api_lease_sla,
        api_market,
        api_stats,
        api_verification,
    )
    from gpudepin.coordinator.api_storage import router as storage_router
    from gpudepin.dashboard import pages

    return [
        api.router,
        api_chain.router,
        api_enterprise.router,
        api_stats.router,
        api_verification.router,
        api_disputes.router,
        api_market.router,
        api_lease_sla.router,
        api_ai.router,
        storage_router,
        pages.router,
    ]
