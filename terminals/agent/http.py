"""The card agent's HTTP API for the HIS on the same workstation.

    GET  /v1/status                 reader name, card present, busy, last event seq
    POST /v1/card                   read the card: EF05 (and EF06 on generation 2)
    POST /v1/person-info            authenticate the card through the engine and
                                    answer 1101; body {"pin": "..."} to verify the PIN
    GET  /v1/events?after=N&wait_s=S  card inserted/removed events after seq N,
                                    long-polling up to S seconds (≤ 30)

Bound to 127.0.0.1 by default. Because any web page open on the workstation can send
requests to localhost, POSTs must carry `Content-Type: application/json` (which a
browser cannot send cross-origin without a CORS preflight this service never grants)
and any request carrying an `Origin` header is refused.

Answers: 200 with the result; 400 a malformed request (naming the field); 422 the card
or the engine refused (`error.source` card|engine, `error.code` the stable number —
the terminal-standard card code or the engine's ResultCode — and `error.result` its
name); 503 the engine or the reader is unavailable; 409 another card flow is running.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from aiohttp import web

from card.reader import Reader
from card.ssse import CardBasics, CardHolder
from terminals.agent.core import AgentError, CardAgent, ErrorSource
from terminals.agent.events import EventLog, ReaderWatcher

EVENTS_WAIT_MAX_S = 30.0
BODY_MAX_BYTES = 4096


class PersonInfoRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pin: str | None = None


def _date(value: dt.date) -> str:
    return value.isoformat()


def basics_json(b: CardBasics) -> dict[str, Any]:
    return {
        "card_sn": b.card_sn,
        "card_no": b.card_no,
        "region": b.region,
        "card_type": b.card_type,
        "spec_version": b.spec_version,
        "generation": b.generation,
        "algorithm": b.algorithm.name,
        "init_org": b.init_org,
        "issue_date": _date(b.issue_date),
        "expiry_date": _date(b.expiry_date),
        "atr": b.atr.hex().upper(),
    }


def holder_json(h: CardHolder) -> dict[str, Any]:
    return {
        "certno": h.certno,
        "name": h.name,
        "gender": h.gender,
        "nation": h.nation,
        "birthplace": h.birthplace,
        "birth_date": _date(h.birth_date),
    }


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(payload), status=status, content_type="application/json"
    )


def _error(status: int, source: str, code: int, result: str, message: str) -> web.Response:
    return _json(
        {"error": {"source": source, "code": code, "result": result, "message": message}}, status
    )


def _agent_error(exc: AgentError) -> web.Response:
    status = 503 if exc.source is ErrorSource.service else 422
    if exc.source is ErrorSource.card and exc.result in ("reader_error", "reader_timeout"):
        status = 503
    return _error(status, exc.source.value, exc.code, exc.result, exc.message)


@web.middleware
async def _local_only(request: web.Request, handler: Any) -> web.StreamResponse:
    if "Origin" in request.headers:
        return _error(403, "request", 0, "origin_refused", "requests from web pages are refused")
    if request.method == "POST" and request.content_type != "application/json":
        return _error(
            415, "request", 0, "content_type_refused", "POST needs Content-Type: application/json"
        )
    response: web.StreamResponse = await handler(request)
    return response


class AgentApp:
    def __init__(self, agent: CardAgent, *, watch_reader: Reader | None = None) -> None:
        """`watch_reader`: the Reader object the presence watcher uses (see
        ReaderWatcher); defaults to the agent's own, which only a thread-safe reader
        (MemoryReader) allows."""
        self.agent = agent
        self.events = EventLog(agent.reader.name)
        self.watcher = ReaderWatcher(watch_reader or agent.reader, self.events)

    def build(self) -> web.Application:
        app = web.Application(middlewares=[_local_only], client_max_size=BODY_MAX_BYTES)
        app.router.add_get("/v1/status", self.status)
        app.router.add_post("/v1/card", self.read_card)
        app.router.add_post("/v1/person-info", self.person_info)
        app.router.add_get("/v1/events", self.wait_events)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.watcher.start()

    async def _stop(self, app: web.Application) -> None:
        await self.watcher.stop()
        await self.agent.close()

    async def status(self, request: web.Request) -> web.Response:
        return _json(
            {
                "reader": self.agent.reader.name,
                "card_present": self.watcher.present,  # null until the watcher looked
                "busy": self.agent.busy,
                "last_event_seq": self.events.last_seq,
            }
        )

    async def read_card(self, request: web.Request) -> web.Response:
        if self.agent.busy:
            return _error(409, "request", 0, "agent_busy", "another card flow is running")
        try:
            got = await self.agent.read_card()
        except AgentError as exc:
            return _agent_error(exc)
        return _json(
            {
                "card": basics_json(got.basics),
                "holder": None if got.holder is None else holder_json(got.holder),
            }
        )

    async def person_info(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw or b"{}", type=PersonInfoRequest)
        except msgspec.ValidationError as exc:
            return _error(400, "request", 0, "field_invalid", f"body: {exc}")
        except msgspec.DecodeError as exc:
            return _error(400, "request", 0, "body_malformed", f"body is not JSON: {exc}")
        if body.pin is not None and not (body.pin.isdigit() and 4 <= len(body.pin) <= 16):
            return _error(400, "request", 0, "field_invalid", "pin: 4 to 16 digits")
        if self.agent.busy:
            return _error(409, "request", 0, "agent_busy", "another card flow is running")
        try:
            got = await self.agent.person_info(pin=body.pin)
        except AgentError as exc:
            return _agent_error(exc)
        return _json(
            {
                "card": basics_json(got.basics),
                "holder": holder_json(got.holder),
                "pin_verified": got.pin_verified,
                "person": msgspec.to_builtins(got.person),
                "elapsed_ms": round(got.elapsed_ms, 1),
            }
        )

    async def wait_events(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            wait_s = float(request.query.get("wait_s", "0"))
        except ValueError:
            return _error(400, "request", 0, "field_invalid", "after: integer, wait_s: seconds")
        if after < 0 or not 0 <= wait_s <= EVENTS_WAIT_MAX_S:
            return _error(
                400, "request", 0, "field_invalid", f"after ≥ 0, wait_s 0..{EVENTS_WAIT_MAX_S:g}"
            )
        return _json(await self.events.wait_after(after, wait_s))
