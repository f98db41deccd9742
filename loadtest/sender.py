"""Sending one signed request and recording its outcome.

A request is *prepared* (envelope encoded, msgid drawn, headers signed) before its
intended send time where the scenario allows it, then *sent*; the recorder gets the
latency from the intended time and the outcome as (HTTP status, result name):
`ok`, a `ResultCode` name for a refusal (infcode -1), or `timeout`,
`connection_error`, `answer_malformed` when there is no usable answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import msgspec

from loadtest.recorder import OK, Recorder
from terminals import signing, wire
from terminals.client import PATH, Client, Credentials
from terminals.msgid import MsgIdFactory


class LeanAnswer(msgspec.Struct, frozen=True):
    """The part of an answer the generator looks at; `output` is decoded lazily by the
    scenario that needs a field of it."""

    infcode: int
    yk_result: str = ""
    output: msgspec.Raw = msgspec.Raw(b"null")


_answer_decoder = msgspec.json.Decoder(LeanAnswer)


@dataclass
class LoadTerminal:
    """One simulated terminal: its credentials, its sign-in and its own msgids."""

    credentials: Credentials
    client: Client  # used for the envelope and the 9001 sign-in only

    @property
    def fixmedins_code(self) -> str:
        return self.credentials.fixmedins_code


def make_terminal(
    credentials: Credentials, http: aiohttp.ClientSession, url: str, msgids: MsgIdFactory
) -> LoadTerminal:
    return LoadTerminal(credentials, Client(url, credentials, session=http, msgids=msgids))


@dataclass(frozen=True)
class Prepared:
    infno: str
    body: bytes
    headers: dict[str, str]


class Sender:
    def __init__(
        self, http: aiohttp.ClientSession, url: str, recorder: Recorder, timeout_s: float
    ) -> None:
        self._http = http
        self._url = url.rstrip("/") + PATH
        self.recorder = recorder
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def prepare(
        self, term: LoadTerminal, request: wire.Request, insuplc_admdvs: str
    ) -> Prepared:
        msgid = await term.client.msgids.next()
        body = term.client.envelope(msgid, request, insuplc_admdvs)
        c = term.credentials
        headers = signing.signed_headers(
            c.terminal_id,
            c.mac_key,
            "POST",
            PATH,
            body,
            now_s=int(time.time()),
            nonce=signing.new_nonce(),
        )
        headers["Content-Type"] = "application/json"
        return Prepared(wire.infno_of(request), body, headers)

    async def send(self, req: Prepared, intended: float) -> LeanAnswer | None:
        """Send and record; the answer when it is `ok`, None otherwise."""
        self.recorder.sent(intended, time.monotonic())
        status, result, ans = 0, OK, None
        try:
            async with self._http.post(
                self._url, data=req.body, headers=req.headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.read()
            try:
                ans = _answer_decoder.decode(raw)
                if ans.infcode != 0 or status != 200:
                    result = ans.yk_result or f"http_{status}"
            except msgspec.DecodeError:
                result = "answer_malformed"
        except TimeoutError:
            result = "timeout"
        except (aiohttp.ClientError, OSError):
            result = "connection_error"
        except asyncio.CancelledError:
            self.recorder.answer(req.infno, intended, time.monotonic(), 0, "cancelled")
            raise
        self.recorder.answer(req.infno, intended, time.monotonic(), status, result)
        return ans if result == OK else None

    async def call(
        self, term: LoadTerminal, request: wire.Request, insuplc_admdvs: str
    ) -> tuple[LeanAnswer | None, float]:
        """Prepare and send at once (a step that depends on an earlier answer); returns
        the answer and the time it arrived, which is the next step's intended time."""
        intended = time.monotonic()
        req = await self.prepare(term, request, insuplc_admdvs)
        ans = await self.send(req, intended)
        return ans, time.monotonic()
