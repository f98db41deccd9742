"""The aiohttp application: routes, the observing middleware and the probe handlers.

The middleware gives every request an id (a valid caller `X-Request-Id` or a new one),
puts it on every log line written while handling it and on the response, bounds the
handler by the request budget, and counts the request by route pattern, method (one of
a fixed set: a client may send any token) and status. A
handler that fails unexpectedly is a bug: it is logged with its traceback and answered
500 with the request id, never with internals.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine import __version__, constants, openapi
from engine.config import Config
from engine.db.pool import DatabaseUnavailableError, probe
from engine.hsm_runtime import readiness_problem
from engine.http_tx import TxEndpoint, handle_tx
from engine.logs import request_id_var
from engine.metrics import EngineMetrics, http_method
from hsm.protocol import Hsm

log = logging.getLogger("engine.http")

_REQUEST_ID_RE = re.compile(rf"^[A-Za-z0-9._:-]{{1,{constants.REQUEST_ID_LENGTH_MAX}}}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class EngineState:
    """What the handlers share: fixed config, live pool, metrics, lifecycle flags."""

    config: Config
    metrics: EngineMetrics
    pool: asyncpg.Pool | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    shutting_down: bool = False
    tx: TxEndpoint | None = None
    hsm: Hsm | None = None


STATE = web.AppKey("state", EngineState)


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def _json_error(status: int, message: str, request_id: str) -> web.Response:
    return web.json_response({"error": message, "request_id": request_id}, status=status)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID_RE.match(offered) else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    state.metrics.http_in_flight.inc()
    status = 500
    try:
        try:
            async with asyncio.timeout(state.config.server.request_timeout_s):
                response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Request-Id"] = request_id
            status = exc.status
            raise
        except TimeoutError:
            log.warning("request exceeded its time budget")
            response = _json_error(503, "request timed out; try again", request_id)
            response.headers["Retry-After"] = "1"
        except Exception:
            log.exception("unhandled error while handling request")
            response = _json_error(500, "internal error", request_id)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        elapsed_s = time.perf_counter() - started
        route = _route_label(request)
        labels = (route, http_method(request.method), str(status))
        state.metrics.http_requests.labels(*labels).inc()
        state.metrics.http_latency.labels(*labels).observe(elapsed_s)
        state.metrics.http_in_flight.dec()
        if state.config.server.access_log:
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": request.method,
                        "route": route,
                        "status": status,
                        "elapsed_ms": round(elapsed_s * 1000, 3),
                        "remote": request.remote,
                    }
                },
            )
        request_id_var.reset(token)


async def index(request: web.Request) -> web.Response:
    """What this engine serves: name, version and its routes."""
    routes = sorted(
        {
            (r.method, r.resource.canonical)
            for r in request.app.router.routes()
            if r.resource is not None and r.method != "HEAD"
        }
    )
    return web.json_response(
        {
            "service": "yikatong",
            "version": __version__,
            "routes": [{"method": m, "path": p} for m, p in routes],
        }
    )


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers. Checks nothing else."""
    state = request.app[STATE]
    uptime_s = round(time.monotonic() - state.started_monotonic, 3)
    return web.json_response({"status": "alive", "version": __version__, "uptime_s": uptime_s})


async def readyz(request: web.Request) -> web.Response:
    """Ready to take traffic: the database answers within its deadline."""
    state = request.app[STATE]
    if state.shutting_down:
        return _unready("shutting down")
    if state.pool is None:
        return _unready("database: pool not open")
    try:
        elapsed_s = await probe(state.pool, state.config.database)
    except DatabaseUnavailableError as exc:
        state.metrics.db_up.set(0)
        log.warning("readiness probe failed", extra={"fields": {"reason": str(exc)}})
        return _unready(f"database: {exc}")
    state.metrics.db_up.set(1)
    state.metrics.db_probe_latency.observe(elapsed_s)
    checks: dict[str, object] = {"database": {"latency_ms": round(elapsed_s * 1000, 3)}}
    if state.hsm is not None:
        started = time.perf_counter()
        deadline_s = state.config.hsm.deadline_s
        master = state.tx.terminal_mac_master if state.tx is not None else None
        try:
            async with asyncio.timeout(deadline_s * 2):
                problem = await readiness_problem(
                    state.hsm, master, deadline_s=deadline_s, metrics=state.metrics
                )
        except TimeoutError:
            problem = f"hsm unavailable: no answer within {deadline_s}s"
        if problem is not None:
            log.warning("HSM readiness probe failed", extra={"fields": {"reason": problem}})
            return _unready(problem)
        checks["hsm"] = {
            "backend": state.hsm.backend,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    return web.json_response({"status": "ready", "checks": checks})


def _unready(reason: str) -> web.Response:
    response = web.json_response({"status": "unready", "reason": reason}, status=503)
    response.headers["Retry-After"] = "1"
    return response


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def debug_sleep(request: web.Request) -> web.Response:
    """Hold a request open for `?s=` seconds: a drill for graceful shutdown and
    timeouts. Mounted only when `server.debug_routes` is true."""
    request_id = request_id_var.get() or ""
    try:
        seconds = float(request.query.get("s", "1"))
    except ValueError:
        return _json_error(400, "s: expected a number of seconds", request_id)
    if not 0 <= seconds <= constants.DEBUG_SLEEP_S_MAX:
        limit = constants.DEBUG_SLEEP_S_MAX
        return _json_error(400, f"s: must be between 0 and {limit}", request_id)
    await asyncio.sleep(seconds)
    return web.json_response({"slept_s": seconds})


def build_app(state: EngineState) -> web.Application:
    app = web.Application(middlewares=[observe], client_max_size=constants.HTTP_BODY_BYTES_MAX)
    app[STATE] = state
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if state.tx is not None:
        endpoint = state.tx

        async def tx(request: web.Request) -> web.Response:
            """The settlement protocol: one signed JSON envelope per transaction."""
            return await handle_tx(request, endpoint)

        app.router.add_post("/api/v1/tx", tx)
        document = openapi.build(endpoint.registry)
        spec_body = msgspec.json.encode(document)
        page = openapi.render_html(document)

        async def openapi_json(request: web.Request) -> web.Response:
            """The OpenAPI document of every route, generated from the Structs."""
            return web.Response(body=spec_body, content_type="application/json")

        async def docs(request: web.Request) -> web.Response:
            """The OpenAPI document rendered as a self-contained page."""
            return web.Response(text=page, content_type="text/html")

        app.router.add_get("/openapi.json", openapi_json)
        app.router.add_get("/docs", docs)
    if state.config.server.debug_routes:
        app.router.add_get("/debug/sleep", debug_sleep)
    return app
