"""The Python client SDK for HIS and POS integrators.

    async with Client(base_url, credentials) as yk:
        await yk.sign_in()
        person = await yk.person_info_by_id_number("510104199001011234")
        reg = await yk.register(region, tx2201.Data(psn_no=..., insutype="310", ...))
        ...

It signs every request (terminals.signing), draws msgids (terminals.msgid), has one
method per transaction taking its request Structs (terminals.messages.txNNNN), and
raises the errors of terminals.errors: `BusinessError` (infcode -1, with the stable
`ResultCode`), `AuthenticationError` (401), `RequestRejected` (400),
`ServiceUnavailable` (503, safe to retry later). `call()` sends any transaction's
`Input`, without its default-valued fields (terminals.wire), money as JSON numbers
exactly as the Decimals hold them (`yuan()` gives 2 places); `envelope_raw()` and
`post()` send any JSON value as `input`, for tests of what the engine refuses.

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

import datetime as dt
import decimal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from terminals import signing, wire
from terminals.envelope import Answer
from terminals.errors import (
    AuthenticationError,
    BusinessError,
    OutcomeUnknown,
    RequestRejected,
    ServiceUnavailable,
    YikatongError,
)
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
from terminals.msgid import PLATFORM_TZ, MsgIdFactory
from terminals.results import ResultCode
from terminals.wire import Request

# The errors and MsgIdFactory are re-exported: `from terminals.client import BusinessError`.
__all__ = [
    "PATH",
    "AuthenticationError",
    "BusinessError",
    "Client",
    "Credentials",
    "MsgIdFactory",
    "OutcomeUnknown",
    "RequestRejected",
    "ServiceUnavailable",
    "YikatongError",
    "yuan",
]

PATH = "/api/v1/tx"
FINANCIAL_INFNOS = frozenset({tx2207.INFNO, tx2208.INFNO})
T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="number")
_answer_decoder = msgspec.json.Decoder(Answer)


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

    def envelope(self, msgid: str, request: Request, insuplc_admdvs: str) -> bytes:
        """The body that `call(request)` sends under `msgid`."""
        return self.envelope_raw(wire.infno_of(request), msgid, wire.lean(request), insuplc_admdvs)

    def envelope_raw(self, infno: str, msgid: str, input_obj: Any, insuplc_admdvs: str) -> bytes:
        """A body with any JSON-encodable value as `input`, unchecked (for edge tests)."""
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
        request: Request,
        output_type: type[T],
        *,
        insuplc_admdvs: str = "",
        state_changing: bool = True,
    ) -> T:
        """Send one transaction's `Input`; its infno is its module's INFNO."""
        infno = wire.infno_of(request)
        msgid = await self.msgids.next()
        body = self.envelope_raw(infno, msgid, wire.lean(request), insuplc_admdvs)
        return await self._send(infno, msgid, body, output_type, state_changing, retries=1)

    async def reverse(self, unknown: OutcomeUnknown) -> tx2601.Output:
        """2601: undo the request whose answer was lost (DOMAIN.md §2.9). Safe whatever
        happened: a committed original is undone, an original that never arrived is
        refused if it arrives later, and a second reversal answers already_reversed.
        If the reversal itself times out, call reverse() again."""
        original = msgspec.json.decode(unknown.body)
        data = tx2601.Data(
            psn_no=original["input"]["data"]["psn_no"], omsgid=unknown.msgid, oinfno=unknown.infno
        )
        return await self.call(
            tx2601.Input(data=data), tx2601.Output, insuplc_admdvs=original["insuplc_admdvs"]
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
        sign_in = tx9001.SignInData(opter_no=self.credentials.opter, mac=mac, ip=ip)
        out = await self.call(tx9001.Input(signIn=sign_in), tx9001.Output)
        self.sign_no = out.signinoutb.sign_no
        return out

    async def sign_out(self) -> tx9002.Output:
        sign_out = tx9002.SignOutData(sign_no=self.sign_no, opter_no=self.credentials.opter)
        out = await self.call(tx9002.Input(signOut=sign_out), tx9002.Output)
        self.sign_no = ""
        return out

    async def person_info(self, data: tx1101.Data) -> tx1101.Output:
        """1101 by any credential; the methods below build `data` for each."""
        return await self.call(tx1101.Input(data=data), tx1101.Output, state_changing=False)

    async def person_info_by_id_number(self, certno: str) -> tx1101.Output:
        return await self.person_info(
            tx1101.Data(
                mdtrt_cert_type=tx1101.CERT_TYPE_ID_NUMBER,
                mdtrt_cert_no=certno,
                psn_cert_type="01",
                certno=certno,
            )
        )

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
        data = tx9301.Data(
            card_sn=card_sn,
            ext_process_factor=(ext_process_factor or b"").hex().upper(),
            ext_challenge=(ext_challenge or b"").hex().upper(),
        )
        return await self.call(tx9301.Input(data=data), tx9301.Output, state_changing=False)

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
        auth = tx1101.CardAuth(
            challenge=challenge.hex().upper(),
            process_factor=process_factor.hex().upper(),
            cryptogram=cryptogram.hex().upper(),
        )
        return await self.person_info(
            tx1101.Data(
                mdtrt_cert_type=tx1101.CERT_TYPE_CARD,
                mdtrt_cert_no=card_no,
                card_sn=card_sn,
                psn_cert_type="01" if certno else "",
                certno=certno,
                psn_name=psn_name,
                yk_card_auth=auth,
            )
        )

    async def person_info_by_ecard(self, token_id: str, qr: str) -> tx1101.Output:
        """1101 by e-card (mdtrt_cert_type 01): `token_id` goes where the national
        ecToken goes (mdtrt_cert_no), the whole QR text in `yk_ecard_qr`. A token is
        single use: the first accepted call burns it."""
        data = tx1101.Data(
            mdtrt_cert_type=tx1101.CERT_TYPE_ECARD, mdtrt_cert_no=token_id, yk_ecard_qr=qr
        )
        return await self.person_info(data)

    async def register(self, insuplc_admdvs: str, data: tx2201.Data) -> tx2201.Output:
        request = tx2201.Input(data=data)
        return await self.call(request, tx2201.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_registration(self, insuplc_admdvs: str, data: tx2202.Data) -> tx2202.Output:
        request = tx2202.Input(data=data)
        return await self.call(request, tx2202.Output, insuplc_admdvs=insuplc_admdvs)

    async def visit_info(
        self,
        insuplc_admdvs: str,
        mdtrtinfo: tx2203.MdtrtInfo,
        diseinfo: Sequence[tx2203.DiseInfo] = (),
    ) -> tx2203.Output:
        request = tx2203.Input(mdtrtinfo=mdtrtinfo, diseinfo=list(diseinfo))
        return await self.call(request, tx2203.Output, insuplc_admdvs=insuplc_admdvs)

    async def upload_fees(
        self, insuplc_admdvs: str, feedetail: Sequence[tx2204.FeeDetail]
    ) -> tx2204.Output:
        request = tx2204.Input(feedetail=list(feedetail))
        return await self.call(request, tx2204.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_fees(self, insuplc_admdvs: str, data: tx2205.Data) -> tx2205.Output:
        """2205; `chrg_bchno=tx2205.ALL_BATCHES` cancels every unsettled detail."""
        request = tx2205.Input(data=data)
        return await self.call(request, tx2205.Output, insuplc_admdvs=insuplc_admdvs)

    async def pre_settle(self, insuplc_admdvs: str, data: tx2206.Data) -> setl.Output:
        """2206; a 2207 `Data` may be given: its 2207-only fields are not sent."""
        request = tx2206.Input(data=data)
        return await self.call(
            request, tx2206.Output, insuplc_admdvs=insuplc_admdvs, state_changing=False
        )

    async def settle(self, insuplc_admdvs: str, data: tx2207.Data) -> setl.Output:
        request = tx2207.Input(data=data)
        return await self.call(request, tx2207.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_settlement(self, insuplc_admdvs: str, data: tx2208.Data) -> setl.Output:
        request = tx2208.Input(data=data)
        return await self.call(request, tx2208.Output, insuplc_admdvs=insuplc_admdvs)


def yuan(value: decimal.Decimal | int | str) -> decimal.Decimal:
    """Yuan as the wire wants it: a Decimal with 2 places (never a float)."""
    return decimal.Decimal(value).quantize(decimal.Decimal("0.01"))
