"""The Python client SDK for HIS and POS integrators.

    async with Client(base_url, credentials) as yk:
        await yk.sign_in()
        person = await yk.person_info_by_id_number("510104199001011234")
        ...

It signs every request (terminals.signing), builds `msgid` as the national platform
does (institution code 12 + yyyyMMddHHmmss + 4-digit sequence, DOMAIN.md §2.2), has one
method per transaction, and raises typed errors: `BusinessError` (infcode -1, with the
stable `ResultCode`), `AuthenticationError` (401), `RequestRejected` (400),
`ServiceUnavailable` (503, safe to retry later).

Unknown outcomes (DOMAIN.md §2.9): when a state-changing call times out or the
connection drops, the engine may or may not have committed it. The client never
re-sends a settlement under a new msgid. A financial call (2207, 2208) raises
`OutcomeUnknown`, which carries the original msgid and body, and the caller chooses:
`reverse(exc)` sends 2601 to undo it (the national remedy; a committed settlement is
cancelled, one that never arrived is tombstoned), or `resend(exc)` sends the identical
request again — answered from the engine's idempotency record if the original
committed, processed once if not. Other state-changing calls are re-sent once that
way automatically.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import aiohttp
import msgspec

from terminals import signing
from terminals.envelope import Answer
from terminals.messages import (
    setl,
    tx1101,
    tx2201,
    tx2202,
    tx2203,
    tx2204,
    tx2205,
    tx2206,
    tx2207,
    tx2208,
    tx2601,
    tx9001,
    tx9002,
    tx9301,
)
from terminals.results import ResultCode

PATH = "/api/v1/tx"
FINANCIAL_INFNOS = frozenset({"2207", "2208"})
PLATFORM_TZ = dt.timezone(dt.timedelta(hours=8))
T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="number")
_answer_decoder = msgspec.json.Decoder(Answer)


class YikatongError(Exception):
    """Base of every error the client raises."""


class BusinessError(YikatongError):
    """The engine refused the transaction (infcode -1); nothing was changed."""

    def __init__(self, code: ResultCode, err_msg: str, answer: Answer) -> None:
        self.code = code
        self.err_msg = err_msg
        self.answer = answer
        super().__init__(f"{code.name} ({int(code)}): {err_msg}")


class AuthenticationError(BusinessError):
    """401: the request signature, timestamp, nonce or terminal was refused."""


class RequestRejected(BusinessError):
    """400: the body was not a valid JSON envelope."""


class ServiceUnavailable(YikatongError):
    """503 or a refused connection: nothing happened; try again later."""


class OutcomeUnknown(YikatongError):
    """A state-changing call's answer was lost; the engine may have committed it."""

    def __init__(self, infno: str, msgid: str, body: bytes, cause: BaseException) -> None:
        self.infno = infno
        self.msgid = msgid
        self.body = body
        super().__init__(
            f"outcome of {infno} msgid {msgid} unknown ({type(cause).__name__});"
            " resend the identical request (client.resend) — never a new msgid"
        )


@dataclass(frozen=True)
class Credentials:
    terminal_id: str
    mac_key: bytes
    fixmedins_code: str
    fixmedins_name: str
    mdtrtarea_admvs: str
    opter: str
    opter_name: str = ""
    opter_type: str = "1"


class MsgIdFactory:
    """institution code (12) + yyyyMMddHHmmss (14) + sequence (4) within the second.

    A msgid must be unique per institution, so every sender of one institution must
    draw from one factory: `Client` shares one per institution within a process
    (`for_institution`). Several processes sending for one institution must each get
    a disjoint slice of the 10 000 sequence numbers (`first_seq`, `seq_count`)."""

    _shared: ClassVar[dict[str, MsgIdFactory]] = {}

    def __init__(
        self,
        fixmedins_code: str,
        clock: Callable[[], float] = time.time,
        *,
        first_seq: int = 0,
        seq_count: int = 10_000,
    ) -> None:
        if not (first_seq >= 0 and seq_count >= 1 and first_seq + seq_count <= 10_000):
            raise ValueError("sequence slice must lie within 0..9999")
        self._code = fixmedins_code
        self._clock = clock
        self._first = first_seq
        self._count = seq_count
        self._second = -1
        self._used = 0

    @classmethod
    def for_institution(cls, fixmedins_code: str) -> MsgIdFactory:
        """The process-wide factory of an institution (real clock, full range)."""
        return cls._shared.setdefault(fixmedins_code, cls(fixmedins_code))

    async def next(self) -> str:
        while True:
            now = self._clock()
            second = int(now)
            if second != self._second:
                self._second, self._used = second, 0
            if self._used < self._count:
                seq = self._first + self._used
                self._used += 1
                stamp = dt.datetime.fromtimestamp(second, PLATFORM_TZ).strftime("%Y%m%d%H%M%S")
                return f"{self._code}{stamp}{seq:04d}"
            await asyncio.sleep(second + 1 - now)


class Client:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        msgids: MsgIdFactory | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + PATH
        self.credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self.msgids = msgids or MsgIdFactory.for_institution(credentials.fixmedins_code)
        self.sign_no = ""

    async def __aenter__(self) -> Client:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- the envelope -----------------------------------------------------------------

    def envelope(self, infno: str, msgid: str, input_obj: Any, insuplc_admdvs: str) -> bytes:
        c = self.credentials
        now = dt.datetime.fromtimestamp(self._clock(), PLATFORM_TZ)
        return _encoder.encode(
            {
                "infno": infno,
                "msgid": msgid,
                "mdtrtarea_admvs": c.mdtrtarea_admvs,
                "insuplc_admdvs": insuplc_admdvs,
                "recer_sys_code": "YKT",
                "infver": "V1.0",
                "opter_type": c.opter_type,
                "opter": c.opter,
                "opter_name": c.opter_name,
                "inf_time": now.strftime("%Y-%m-%d %H:%M:%S"),
                "fixmedins_code": c.fixmedins_code,
                "fixmedins_name": c.fixmedins_name,
                "sign_no": self.sign_no,
                "input": input_obj,
            }
        )

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Sign and send one body; return (HTTP status, answer bytes)."""
        if self._session is None:
            raise YikatongError("client is closed; use `async with Client(...)`")
        headers = signing.signed_headers(
            self.credentials.terminal_id,
            self.credentials.mac_key,
            "POST",
            PATH,
            body,
            now_s=int(self._clock()),
            nonce=signing.new_nonce(),
        )
        headers["Content-Type"] = "application/json"
        async with self._session.post(
            self._url, data=body, headers=headers, timeout=self._timeout
        ) as resp:
            return resp.status, await resp.read()

    async def call(
        self,
        infno: str,
        input_obj: Any,
        output_type: type[T],
        *,
        insuplc_admdvs: str = "",
        state_changing: bool = True,
    ) -> T:
        msgid = await self.msgids.next()
        body = self.envelope(infno, msgid, input_obj, insuplc_admdvs)
        return await self._send(infno, msgid, body, output_type, state_changing, retries=1)

    async def reverse(self, unknown: OutcomeUnknown) -> tx2601.Output:
        """2601: undo the request whose answer was lost (DOMAIN.md §2.9). Safe whatever
        happened: a committed original is undone, an original that never arrived is
        refused if it arrives later, and a second reversal answers already_reversed.
        If the reversal itself times out, call reverse() again."""
        original = msgspec.json.decode(unknown.body)
        data = {
            "psn_no": original["input"]["data"]["psn_no"],
            "omsgid": unknown.msgid,
            "oinfno": unknown.infno,
        }
        return await self.call(
            "2601", {"data": data}, tx2601.Output, insuplc_admdvs=original["insuplc_admdvs"]
        )

    async def resend(self, unknown: OutcomeUnknown, output_type: type[T]) -> T:
        """Send the identical request of an unknown outcome again (same msgid, same body)."""
        return await self._send(
            unknown.infno, unknown.msgid, unknown.body, output_type, True, retries=0
        )

    async def _send(
        self,
        infno: str,
        msgid: str,
        body: bytes,
        output_type: type[T],
        state_changing: bool,
        retries: int,
    ) -> T:
        try:
            status, raw = await self.post(body)
        except aiohttp.ClientConnectorError as exc:
            raise ServiceUnavailable(f"cannot connect: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            if not state_changing:
                raise ServiceUnavailable(f"{infno} failed: {type(exc).__name__}") from exc
            if infno in FINANCIAL_INFNOS or retries == 0:
                raise OutcomeUnknown(infno, msgid, body, exc) from exc
            return await self._send(infno, msgid, body, output_type, state_changing, retries - 1)
        return self._decode(status, raw, output_type)

    @staticmethod
    def _decode(status: int, raw: bytes, output_type: type[T]) -> T:
        try:
            ans = _answer_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise YikatongError(f"HTTP {status}: answer is not a valid envelope") from exc
        code = ResultCode(ans.yk_code)
        if status == 503:
            raise ServiceUnavailable(ans.err_msg or code.name)
        if ans.infcode != 0:
            cls = {401: AuthenticationError, 400: RequestRejected}.get(status, BusinessError)
            raise cls(code, ans.err_msg or "", ans)
        return msgspec.convert(ans.output, output_type)

    # -- one method per transaction -----------------------------------------------------

    async def sign_in(self, mac: str = "", ip: str = "") -> tx9001.Output:
        out = await self.call(
            "9001",
            {"signIn": {"opter_no": self.credentials.opter, "mac": mac, "ip": ip}},
            tx9001.Output,
        )
        self.sign_no = out.signinoutb.sign_no
        return out

    async def sign_out(self) -> tx9002.Output:
        out = await self.call(
            "9002",
            {"signOut": {"sign_no": self.sign_no, "opter_no": self.credentials.opter}},
            tx9002.Output,
        )
        self.sign_no = ""
        return out

    async def person_info_by_id_number(self, certno: str) -> tx1101.Output:
        data = {
            "mdtrt_cert_type": "02",
            "mdtrt_cert_no": certno,
            "psn_cert_type": "01",
            "certno": certno,
        }
        return await self.call("1101", {"data": data}, tx1101.Output, state_changing=False)

    async def card_challenge(
        self,
        card_sn: str,
        ext_process_factor: bytes | None = None,
        ext_challenge: bytes | None = None,
    ) -> tx9301.Output:
        """9301: the engine's single-use challenge (60 s, for this terminal and card)
        and, given the card's two GET CHALLENGE values for EXTERNAL AUTHENTICATE
        (generation 3), the HSM's cryptogram for it. Not re-sent on a lost answer: a
        new call simply gets a new challenge."""
        if (ext_process_factor is None) != (ext_challenge is None):
            raise ValueError("ext_process_factor and ext_challenge go together")
        data = {"card_sn": card_sn}
        if ext_process_factor is not None and ext_challenge is not None:
            data["ext_process_factor"] = ext_process_factor.hex().upper()
            data["ext_challenge"] = ext_challenge.hex().upper()
        return await self.call("9301", {"data": data}, tx9301.Output, state_changing=False)

    async def person_info_by_card(
        self,
        card_no: str,
        card_sn: str,
        challenge: bytes,
        process_factor: bytes,
        cryptogram: bytes,
        *,
        certno: str = "",
        psn_name: str = "",
    ) -> tx1101.Output:
        """1101 by social security card (mdtrt_cert_type 03): the card's INTERNAL
        AUTHENTICATE answer over a 9301 challenge; `certno`/`psn_name` read from EF06
        are checked against the card's holder when given. The challenge is consumed
        by the first attempt, whatever its answer: after a failure or a lost answer
        start again from 9301."""
        data: dict[str, Any] = {
            "mdtrt_cert_type": tx1101.CERT_TYPE_CARD,
            "mdtrt_cert_no": card_no,
            "card_sn": card_sn,
            "yk_card_auth": {
                "challenge": challenge.hex().upper(),
                "process_factor": process_factor.hex().upper(),
                "cryptogram": cryptogram.hex().upper(),
            },
        }
        if certno:
            data["psn_cert_type"] = "01"
            data["certno"] = certno
        if psn_name:
            data["psn_name"] = psn_name
        return await self.call("1101", {"data": data}, tx1101.Output, state_changing=False)

    async def person_info_by_ecard(self, token_id: str, qr: str) -> tx1101.Output:
        """1101 by e-card (mdtrt_cert_type 01): `token_id` goes where the national
        ecToken goes (mdtrt_cert_no), the whole QR text in `yk_ecard_qr`. A token is
        single use: the first accepted call burns it."""
        data = {
            "mdtrt_cert_type": tx1101.CERT_TYPE_ECARD,
            "mdtrt_cert_no": token_id,
            "yk_ecard_qr": qr,
        }
        return await self.call("1101", {"data": data}, tx1101.Output, state_changing=False)

    async def register(self, insuplc_admdvs: str, data: dict[str, Any]) -> tx2201.Output:
        return await self.call("2201", {"data": data}, tx2201.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_registration(
        self, insuplc_admdvs: str, psn_no: str, mdtrt_id: str, ipt_otp_no: str
    ) -> tx2202.Output:
        data = {"psn_no": psn_no, "mdtrt_id": mdtrt_id, "ipt_otp_no": ipt_otp_no}
        return await self.call("2202", {"data": data}, tx2202.Output, insuplc_admdvs=insuplc_admdvs)

    async def visit_info(
        self, insuplc_admdvs: str, mdtrtinfo: dict[str, Any], diseinfo: list[dict[str, Any]]
    ) -> tx2203.Output:
        body = {"mdtrtinfo": mdtrtinfo, "diseinfo": diseinfo}
        return await self.call("2203", body, tx2203.Output, insuplc_admdvs=insuplc_admdvs)

    async def upload_fees(
        self, insuplc_admdvs: str, feedetail: list[dict[str, Any]]
    ) -> tx2204.Output:
        return await self.call(
            "2204", {"feedetail": feedetail}, tx2204.Output, insuplc_admdvs=insuplc_admdvs
        )

    async def cancel_fees(
        self, insuplc_admdvs: str, psn_no: str, mdtrt_id: str, chrg_bchno: str = "0000"
    ) -> tx2205.Output:
        data = {"mdtrt_id": mdtrt_id, "chrg_bchno": chrg_bchno, "psn_no": psn_no}
        return await self.call("2205", {"data": data}, tx2205.Output, insuplc_admdvs=insuplc_admdvs)

    async def pre_settle(self, insuplc_admdvs: str, data: dict[str, Any]) -> setl.Output:
        return await self.call(
            "2206",
            {"data": data},
            tx2206.Output,
            insuplc_admdvs=insuplc_admdvs,
            state_changing=False,
        )

    async def settle(self, insuplc_admdvs: str, data: dict[str, Any]) -> setl.Output:
        return await self.call("2207", {"data": data}, tx2207.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_settlement(
        self, insuplc_admdvs: str, psn_no: str, mdtrt_id: str, setl_id: str
    ) -> setl.Output:
        data = {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no}
        return await self.call("2208", {"data": data}, tx2208.Output, insuplc_admdvs=insuplc_admdvs)


def yuan(value: decimal.Decimal | int | str) -> decimal.Decimal:
    """Yuan as the wire wants it: a Decimal with 2 places (never a float)."""
    return decimal.Decimal(value).quantize(decimal.Decimal("0.01"))
