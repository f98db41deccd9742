"""The card agent's HTTP API for the HIS or kiosk UI on the same machine.

    GET  /v1/status                 reader, card present, busy/queued, require_pin, and
                                    the engine's reachability (its /readyz, cached)
    POST /v1/card                   read the card: EF05 (and EF06 on generation 2,
                                    except in require-PIN mode)
    POST /v1/person-info            authenticate the card through the engine and
                                    answer 1101; {"pin": "...", "deadline_s": S}
    POST /v1/ecard                  1101 by e-card QR with the agent's terminal key;
                                    {"qr": "...", "deadline_s": S}
    GET  /v1/events?after=N&wait_s=S  card inserted/removed events after seq N,
                                    long-polling up to S seconds (≤ 30)

Every request passes `access.AccessPolicy` first (bearer token, loopback Host,
origin, Content-Type). Every card flow writes one audit line (`audit`).

Answers: 200 with the result; 400 a malformed request (naming the field); 401 no or a
wrong token; 403 a refused origin or site; 421 a Host that is not this agent; 422 the
card, the engine or the agent's PIN guard refused (`error.source` card|engine|agent,
`error.code` the stable number, `error.result` its stable name, `error.tries_left` on
PIN outcomes); 503 + Retry-After the engine or the reader is unavailable or too slow,
or the reader stayed busy. docs/CARD_AGENT.md lists every `error.result`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from card.reader import Reader
from terminals.agent import audit, limits
from terminals.agent.access import REQUEST_ID, AccessPolicy
from terminals.agent.answers import (
    basics_json,
    error_response,
    holder_json,
    json_response,
    person_json,
)
from terminals.agent.core import CardAgent
from terminals.agent.events import EventLog, ReaderWatcher
from terminals.agent.probe import EngineProbe
from terminals.agent.results import AgentError, AgentResult

log = logging.getLogger(__name__)
S = TypeVar("S", bound=msgspec.Struct)
Flow = Callable[[], Awaitable[tuple[dict[str, Any], bool]]]


class CardRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class PersonInfoRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pin: str | None = None
    deadline_s: float | None = None

    def __repr__(self) -> str:  # STYLE.md §10
        return f"PersonInfoRequest(pin=<{'given' if self.pin else 'none'}>)"


class EcardRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    qr: str
    deadline_s: float | None = None

    def __repr__(self) -> str:
        return "EcardRequest(<qr hidden>)"


async def _decode(request: web.Request, kind: type[S]) -> S:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise AgentError.of(AgentResult.field_invalid, f"body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise AgentError.of(AgentResult.body_malformed, f"body is not JSON: {exc}") from exc


class AgentApp:
    def __init__(
        self,
        agent: CardAgent,
        *,
        access: AccessPolicy,
        engine_url: str,
        watch_reader: Reader | None = None,
    ) -> None:
        """`watch_reader`: the Reader object the presence watcher uses (see
        ReaderWatcher); defaults to the agent's own, which only a thread-safe reader
        (MemoryReader) allows. `engine_url`: where /v1/status probes /readyz."""
        self.agent = agent
        self.access = access
        self.events = EventLog(agent.reader.name)
        self.watcher = ReaderWatcher(watch_reader or agent.reader, self.events)
        self.probe = EngineProbe(engine_url)

    def build(self) -> web.Application:
        app = web.Application(
            middlewares=[self.access.middleware], client_max_size=limits.BODY_MAX_BYTES
        )
        app.router.add_get("/v1/status", self.status)
        app.router.add_post("/v1/card", self.read_card)
        app.router.add_post("/v1/person-info", self.person_info)
        app.router.add_post("/v1/ecard", self.ecard)
        app.router.add_get("/v1/events", self.wait_events)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.watcher.start()
        await self.probe.start()

    async def _stop(self, app: web.Application) -> None:
        await self.watcher.stop()
        await self.probe.close()
        await self.agent.close()

    async def _audited(self, request: web.Request, endpoint: str, flow: Flow) -> web.Response:
        """Run one card flow; one audit line whatever its end."""
        request_id = request[REQUEST_ID]
        started = time.perf_counter()
        pin_required = self.agent.require_pin
        try:
            payload, pin_verified = await flow()
        except Exception as exc:
            if isinstance(exc, AgentError):
                outcome = exc
            else:  # a bug: logged, answered, audited like any other end of a flow
                log.exception("card flow failed", extra={"fields": {"request_id": request_id}})
                outcome = AgentError.of(AgentResult.internal_error, "the agent failed; see its log")
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            audit.card_flow(
                endpoint,
                request_id,
                outcome,
                pin_required=pin_required,
                pin_verified=False,
                elapsed_ms=elapsed_ms,
            )
            return error_response(outcome, request_id)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        audit.card_flow(
            endpoint,
            request_id,
            None,
            pin_required=pin_required,
            pin_verified=pin_verified,
            elapsed_ms=elapsed_ms,
        )
        return json_response({**payload, "request_id": request_id})

    async def status(self, request: web.Request) -> web.Response:
        health = await self.probe.health()
        return json_response(
            {
                "reader": self.agent.reader.name,
                "card_present": self.watcher.present,  # null until the watcher looked
                "busy": self.agent.busy,
                "queued": self.agent.queued,
                "require_pin": self.agent.require_pin,
                "last_event_seq": self.events.last_seq,
                "engine": msgspec.to_builtins(health),
                "request_id": request[REQUEST_ID],
            }
        )

    async def read_card(self, request: web.Request) -> web.Response:
        await _decode(request, CardRequest)

        async def flow() -> tuple[dict[str, Any], bool]:
            got = await self.agent.read_card()
            holder = None if got.holder is None else holder_json(got.holder)
            payload = {
                "card": basics_json(got.basics),
                "holder": holder,
                "holder_withheld": got.holder_withheld,
            }
            return payload, False

        return await self._audited(request, "/v1/card", flow)

    async def person_info(self, request: web.Request) -> web.Response:
        body = await _decode(request, PersonInfoRequest)

        async def flow() -> tuple[dict[str, Any], bool]:
            got = await self.agent.person_info(pin=body.pin, deadline_s=body.deadline_s)
            payload = {
                "card": basics_json(got.basics),
                "holder": holder_json(got.holder),
                "pin_verified": got.pin_verified,
                **person_json(got.person),
                "elapsed_ms": round(got.elapsed_ms, 1),
            }
            return payload, got.pin_verified

        return await self._audited(request, "/v1/person-info", flow)

    async def ecard(self, request: web.Request) -> web.Response:
        body = await _decode(request, EcardRequest)

        async def flow() -> tuple[dict[str, Any], bool]:
            got = await self.agent.person_info_by_ecard(body.qr, deadline_s=body.deadline_s)
            return {**person_json(got.person), "elapsed_ms": round(got.elapsed_ms, 1)}, False

        return await self._audited(request, "/v1/ecard", flow)

    async def wait_events(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            wait_s = float(request.query.get("wait_s", "0"))
        except ValueError:
            raise AgentError.of(
                AgentResult.field_invalid, "after: integer, wait_s: seconds"
            ) from None
        if after < 0 or not 0 <= wait_s <= limits.EVENTS_WAIT_MAX_S:
            raise AgentError.of(
                AgentResult.field_invalid,
                f"after ≥ 0, wait_s 0..{limits.EVENTS_WAIT_MAX_S:g}",
            )
        return json_response(msgspec.to_builtins(await self.events.wait_after(after, wait_s)))
