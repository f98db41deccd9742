"""The Python client SDK for HIS and POS integrators.

    from terminals.messages.outpatient import register as register_msg

    async with Client(base_url, credentials) as yk:
        await yk.sign_in()
        person = await yk.person_info_by_id_number("510104199001011234")
        reg = await yk.register(region, register_msg.Data(psn_no=..., insutype="310", ...))
        ...

It signs every request (terminals.signing), draws msgids (terminals.msgid), has one
method per transaction taking its request Structs (terminals.messages, one module per
code named as in engine.txn: 2207's are terminals.messages.outpatient.settle), and
raises the errors of terminals.errors: `BusinessError` (infcode -1, with the stable
`ResultCode`), `AuthenticationError` (401), `RequestRejected` (400),
`ServiceUnavailable` (503, safe to retry later). `call()` sends any transaction's
`Input`, without its default-valued fields (terminals.wire), money as JSON numbers
exactly as the Decimals hold them (`yuan()` gives 2 places); `envelope_raw()` and
`post()` send any JSON value as `input`, for tests of what the engine refuses.

Unknown outcomes (DOMAIN.md §2.9): when a state-changing call times out or the
connection drops, the engine may or may not have committed it. The client never
re-sends a settlement under a new msgid. A financial call (2207, 2208, 2102, 2103)
raises `OutcomeUnknown`, which carries the original msgid and body, and the caller
chooses: `reverse(exc)` sends 2601 to undo it (the national remedy; a committed
settlement is cancelled, a committed cancellation undone, one that never arrived is
tombstoned), or `resend(exc)` sends the identical
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
from terminals.messages import reversal as reversal_msg
from terminals.messages import setl
from terminals.messages.card import challenge as challenge_msg
from terminals.messages.card import person_info as person_info_msg
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import fees as fees_msg
from terminals.messages.outpatient import fees_cancel as fees_cancel_msg
from terminals.messages.outpatient import presettle as presettle_msg
from terminals.messages.outpatient import register as register_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.outpatient import unregister as unregister_msg
from terminals.messages.outpatient import visit as visit_msg
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.messages.session import sign_in as sign_in_msg
from terminals.messages.session import sign_out as sign_out_msg
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
FINANCIAL_INFNOS = frozenset(
    {settle_msg.INFNO, cancel_msg.INFNO, pharmacy_settle_msg.INFNO, pharmacy_cancel_msg.INFNO}
)
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

    async def reverse(self, unknown: OutcomeUnknown) -> reversal_msg.Output:
        """2601: undo the request whose answer was lost (DOMAIN.md §2.9). Safe whatever
        happened: a committed original is undone, an original that never arrived is
        refused if it arrives later, and a second reversal answers already_reversed.
        If the reversal itself times out, call reverse() again."""
        original = msgspec.json.decode(unknown.body)
        inp = original["input"]
        part = inp["druginfo"] if "druginfo" in inp else inp["data"]  # 2102 / the others
        data = reversal_msg.Data(psn_no=part["psn_no"], omsgid=unknown.msgid, oinfno=unknown.infno)
        return await self.call(
            reversal_msg.Input(data=data),
            reversal_msg.Output,
            insuplc_admdvs=original["insuplc_admdvs"],
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

    async def sign_in(self, mac: str = "", ip: str = "") -> sign_in_msg.Output:
        sign_in = sign_in_msg.SignInData(opter_no=self.credentials.opter, mac=mac, ip=ip)
        out = await self.call(sign_in_msg.Input(signIn=sign_in), sign_in_msg.Output)
        self.sign_no = out.signinoutb.sign_no
        return out

    async def sign_out(self) -> sign_out_msg.Output:
        sign_out = sign_out_msg.SignOutData(sign_no=self.sign_no, opter_no=self.credentials.opter)
        out = await self.call(sign_out_msg.Input(signOut=sign_out), sign_out_msg.Output)
        self.sign_no = ""
        return out

    async def person_info(self, data: person_info_msg.Data) -> person_info_msg.Output:
        """1101 by any credential; the methods below build `data` for each."""
        return await self.call(
            person_info_msg.Input(data=data), person_info_msg.Output, state_changing=False
        )

    async def person_info_by_id_number(self, certno: str) -> person_info_msg.Output:
        return await self.person_info(
            person_info_msg.Data(
                mdtrt_cert_type=person_info_msg.CERT_TYPE_ID_NUMBER,
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
    ) -> challenge_msg.Output:
        """9301: the engine's single-use challenge (60 s, for this terminal and card)
        and, given the card's two GET CHALLENGE values for EXTERNAL AUTHENTICATE
        (generation 3), the HSM's cryptogram for it. Not re-sent on a lost answer: a
        new call simply gets a new challenge."""
        if (ext_process_factor is None) != (ext_challenge is None):
            raise ValueError("ext_process_factor and ext_challenge go together")
        data = challenge_msg.Data(
            card_sn=card_sn,
            ext_process_factor=(ext_process_factor or b"").hex().upper(),
            ext_challenge=(ext_challenge or b"").hex().upper(),
        )
        return await self.call(
            challenge_msg.Input(data=data), challenge_msg.Output, state_changing=False
        )

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
    ) -> person_info_msg.Output:
        """1101 by social security card (mdtrt_cert_type 03): the card's INTERNAL
        AUTHENTICATE answer over a 9301 challenge; `certno`/`psn_name` read from EF06
        are checked against the card's holder when given. The challenge is consumed
        by the first attempt, whatever its answer: after a failure or a lost answer
        start again from 9301."""
        auth = person_info_msg.CardAuth(
            challenge=challenge.hex().upper(),
            process_factor=process_factor.hex().upper(),
            cryptogram=cryptogram.hex().upper(),
        )
        return await self.person_info(
            person_info_msg.Data(
                mdtrt_cert_type=person_info_msg.CERT_TYPE_CARD,
                mdtrt_cert_no=card_no,
                card_sn=card_sn,
                psn_cert_type="01" if certno else "",
                certno=certno,
                psn_name=psn_name,
                yk_card_auth=auth,
            )
        )

    async def person_info_by_ecard(self, token_id: str, qr: str) -> person_info_msg.Output:
        """1101 by e-card (mdtrt_cert_type 01): `token_id` goes where the national
        ecToken goes (mdtrt_cert_no), the whole QR text in `yk_ecard_qr`. A token is
        single use: the first accepted call burns it."""
        data = person_info_msg.Data(
            mdtrt_cert_type=person_info_msg.CERT_TYPE_ECARD, mdtrt_cert_no=token_id, yk_ecard_qr=qr
        )
        return await self.person_info(data)

    async def register(self, insuplc_admdvs: str, data: register_msg.Data) -> register_msg.Output:
        request = register_msg.Input(data=data)
        return await self.call(request, register_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_registration(
        self, insuplc_admdvs: str, data: unregister_msg.Data
    ) -> unregister_msg.Output:
        request = unregister_msg.Input(data=data)
        return await self.call(request, unregister_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def visit_info(
        self,
        insuplc_admdvs: str,
        mdtrtinfo: visit_msg.MdtrtInfo,
        diseinfo: Sequence[visit_msg.DiseInfo] = (),
    ) -> visit_msg.Output:
        request = visit_msg.Input(mdtrtinfo=mdtrtinfo, diseinfo=list(diseinfo))
        return await self.call(request, visit_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def upload_fees(
        self, insuplc_admdvs: str, feedetail: Sequence[fees_msg.FeeDetail]
    ) -> fees_msg.Output:
        request = fees_msg.Input(feedetail=list(feedetail))
        return await self.call(request, fees_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_fees(
        self, insuplc_admdvs: str, data: fees_cancel_msg.Data
    ) -> fees_cancel_msg.Output:
        """2205; `chrg_bchno=fees_cancel_msg.ALL_BATCHES` cancels every unsettled detail."""
        request = fees_cancel_msg.Input(data=data)
        return await self.call(request, fees_cancel_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def pre_settle(self, insuplc_admdvs: str, data: presettle_msg.Data) -> setl.Output:
        """2206; a 2207 `Data` may be given: its 2207-only fields are not sent."""
        request = presettle_msg.Input(data=data)
        return await self.call(
            request, presettle_msg.Output, insuplc_admdvs=insuplc_admdvs, state_changing=False
        )

    async def settle(self, insuplc_admdvs: str, data: settle_msg.Data) -> setl.Output:
        request = settle_msg.Input(data=data)
        return await self.call(request, settle_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def cancel_settlement(self, insuplc_admdvs: str, data: cancel_msg.Data) -> setl.Output:
        request = cancel_msg.Input(data=data)
        return await self.call(request, cancel_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def pharmacy_pre_settle(
        self,
        insuplc_admdvs: str,
        druginfo: pharmacy_presettle_msg.DrugInfo,
        drugdetail: Sequence[pharmacy_presettle_msg.DrugDetail],
    ) -> pharmacy_presettle_msg.Output:
        """2101; a 2102 `DrugInfo` may be given: its 2102-only fields are not sent."""
        request = pharmacy_presettle_msg.Input(druginfo=druginfo, drugdetail=list(drugdetail))
        return await self.call(
            request,
            pharmacy_presettle_msg.Output,
            insuplc_admdvs=insuplc_admdvs,
            state_changing=False,
        )

    async def pharmacy_settle(
        self,
        insuplc_admdvs: str,
        druginfo: pharmacy_settle_msg.DrugInfo,
        drugdetail: Sequence[pharmacy_presettle_msg.DrugDetail],
    ) -> pharmacy_settle_msg.Output:
        """2102: the basket settled in one request (a lost answer: OutcomeUnknown)."""
        request = pharmacy_settle_msg.Input(druginfo=druginfo, drugdetail=list(drugdetail))
        return await self.call(request, pharmacy_settle_msg.Output, insuplc_admdvs=insuplc_admdvs)

    async def pharmacy_cancel(
        self, insuplc_admdvs: str, data: pharmacy_cancel_msg.Data
    ) -> setl.Output:
        """2103: cancel a pharmacy settlement by its setl_id."""
        request = pharmacy_cancel_msg.Input(data=data)
        return await self.call(request, pharmacy_cancel_msg.Output, insuplc_admdvs=insuplc_admdvs)


def yuan(value: decimal.Decimal | int | str) -> decimal.Decimal:
    """Yuan as the wire wants it: a Decimal with 2 places (never a float)."""
    return decimal.Decimal(value).quantize(decimal.Decimal("0.01"))
