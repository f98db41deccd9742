"""What the SDK puts on the wire now that its methods take the request Structs: the
exact bytes of the dict-taking SDK it replaced, money as JSON numbers with the places
the Decimal has, no default-valued fields, and the unchecked path for edge tests.

"Old" bodies are the previous SDK's: its methods wrapped the caller's dicts (as the
HIS simulator, the load tester and the e2e helpers built them) into `input` and
encoded them with the envelope `Client.envelope_raw` still is. Nothing is sent: the
recording client keeps the body its `post` would have signed and sent."""

from __future__ import annotations

import decimal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import msgspec
import pytest

from terminals import wire
from terminals.client import Client, Credentials, MsgIdFactory, OutcomeUnknown
from terminals.envelope import Envelope
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
from terminals.messages.session import sign_in as sign_in_msg
from terminals.messages.session import sign_out as sign_out_msg

NOW_S = 1_795_000_000.0
NOW = "2026-11-29 09:30:00"
REGION = "510100"
CREDS = Credentials(
    terminal_id="T0001",
    mac_key=b"k" * 32,
    fixmedins_code="H51010000001",
    fixmedins_name="第一人民医院",
    mdtrtarea_admvs="510100",
    opter="OP001",
    opter_name="收费员",
)
PSN, CERT, MDTRT = "510100000000000001", "510104199001011234", "510100202611290000000001"
D = decimal.Decimal
T = TypeVar("T")


class Unsent(Exception):
    """Raised by the recording client's `post` in place of sending."""


class Recording(Client):
    def __init__(self) -> None:
        clock = lambda: NOW_S  # noqa: E731
        msgids = MsgIdFactory(CREDS.fixmedins_code, clock=clock)
        super().__init__("http://engine.invalid", CREDS, clock=clock, msgids=msgids)
        self.sign_no = "S0001"
        self.sent: list[bytes] = []

    async def post(self, body: bytes) -> tuple[int, bytes]:
        self.sent.append(body)
        raise Unsent


async def sent_by(c: Recording, call: Awaitable[object]) -> tuple[bytes, str]:
    """The body `call` would have sent, and its msgid."""
    with pytest.raises(Unsent):
        await call
    body = c.sent[-1]
    return body, msgspec.json.decode(body)["msgid"]


def sent_input(body: bytes, input_type: type[T]) -> T:
    """`input` of `body` decoded as the engine decodes it (envelope first, then the
    transaction's own Struct from the raw bytes)."""
    return msgspec.json.decode(msgspec.json.decode(body, type=Envelope).input, type=input_type)


def fee_lines() -> tuple[list[fees_msg.FeeDetail], list[dict[str, Any]]]:
    """Five lines the way the HIS simulator builds them, as Structs and as the dicts
    the old SDK took."""
    structs, dicts = [], []
    items = [
        ("TJIA0001", "100.00", 2),
        ("TYI10001", "12.34", 1),
        ("TBING001", "0.50", 3),
        ("TCEIL001", "1500.00", 1),
        ("TJIA0002", "0.01", 5),
    ]
    for n, (code, pric, cnt) in enumerate(items):
        line: dict[str, Any] = {
            "feedetl_sn": f"{n + 1:04d}",
            "mdtrt_id": MDTRT,
            "psn_no": PSN,
            "chrg_bchno": "B001",
            "fee_ocur_time": NOW,
            "med_list_codg": code,
            "medins_list_codg": f"L{code}",
            "det_item_fee_sumamt": (D(pric) * cnt).quantize(D("0.01")),
            "cnt": D(cnt),
            "pric": D(pric),
            "bilg_dept_codg": "A03",
            "bilg_dept_name": "内科",
        }
        dicts.append(line)
        structs.append(fees_msg.FeeDetail(**line))
    return structs, dicts


SETTLE: dict[str, Any] = {
    "psn_no": PSN,
    "mdtrt_cert_type": "02",
    "mdtrt_cert_no": CERT,
    "med_type": "11",
    "medfee_sumamt": D("1813.91"),
    "mdtrt_id": MDTRT,
    "insutype": "310",
    "acct_used_flag": "0",
}
REGISTER: dict[str, Any] = {
    "psn_no": PSN,
    "insutype": "310",
    "begntime": NOW,
    "mdtrt_cert_type": "02",
    "mdtrt_cert_no": CERT,
    "ipt_otp_no": "MZ00000001",
    "dept_code": "A03",
    "dept_name": "内科",
}
MDTRTINFO: dict[str, Any] = {"mdtrt_id": MDTRT, "psn_no": PSN, "med_type": "11", "begntime": NOW}
DISEINFO: dict[str, Any] = {
    "diag_type": "1",
    "diag_srt_no": 1,
    "diag_code": "J06.900",
    "diag_name": "急性上呼吸道感染",
    "diag_time": NOW,
}
LINES, LINE_DICTS = fee_lines()

# (SDK call, the old SDK's infno and input for the same data)
Call = Callable[[Client], Awaitable[object]]
SAME_BYTES: list[tuple[str, Call, str, dict[str, Any]]] = [
    (
        "2201",
        lambda c: c.register(REGION, register_msg.Data(**REGISTER)),
        "2201",
        {"data": REGISTER},
    ),
    (
        "2203",
        lambda c: c.visit_info(
            REGION, visit_msg.MdtrtInfo(**MDTRTINFO), [visit_msg.DiseInfo(**DISEINFO)]
        ),
        "2203",
        {"mdtrtinfo": MDTRTINFO, "diseinfo": [DISEINFO]},
    ),
    ("2204", lambda c: c.upload_fees(REGION, LINES), "2204", {"feedetail": LINE_DICTS}),
    (
        "2206",
        lambda c: c.pre_settle(REGION, presettle_msg.Data(**SETTLE)),
        "2206",
        {"data": SETTLE},
    ),
    ("2207", lambda c: c.settle(REGION, settle_msg.Data(**SETTLE)), "2207", {"data": SETTLE}),
    (
        "2208",
        lambda c: c.cancel_settlement(
            REGION, cancel_msg.Data(setl_id="ST1", mdtrt_id=MDTRT, psn_no=PSN)
        ),
        "2208",
        {"data": {"setl_id": "ST1", "mdtrt_id": MDTRT, "psn_no": PSN}},
    ),
    (
        "2205",
        lambda c: c.cancel_fees(
            REGION,
            fees_cancel_msg.Data(
                mdtrt_id=MDTRT, chrg_bchno=fees_cancel_msg.ALL_BATCHES, psn_no=PSN
            ),
        ),
        "2205",
        {"data": {"mdtrt_id": MDTRT, "chrg_bchno": "0000", "psn_no": PSN}},
    ),
    (
        "2202",
        lambda c: c.cancel_registration(
            REGION, unregister_msg.Data(psn_no=PSN, mdtrt_id=MDTRT, ipt_otp_no="MZ00000001")
        ),
        "2202",
        {"data": {"psn_no": PSN, "mdtrt_id": MDTRT, "ipt_otp_no": "MZ00000001"}},
    ),
    (
        "1101 by ID number",
        lambda c: c.person_info_by_id_number(CERT),
        "1101",
        {
            "data": {
                "mdtrt_cert_type": "02",
                "mdtrt_cert_no": CERT,
                "psn_cert_type": "01",
                "certno": CERT,
            }
        },
    ),
    (
        "1101 by e-card",
        lambda c: c.person_info_by_ecard("TK1", "YKEC1.abc.def"),
        "1101",
        {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": "TK1", "yk_ecard_qr": "YKEC1.abc.def"}},
    ),
    (
        "9301",
        lambda c: c.card_challenge("AB" * 16),
        "9301",
        {"data": {"card_sn": "AB" * 16}},
    ),
    (
        "9301 with ext",
        lambda c: c.card_challenge("AB" * 16, b"\x01" * 8, b"\x02" * 8),
        "9301",
        {"data": {"card_sn": "AB" * 16, "ext_process_factor": "01" * 8, "ext_challenge": "02" * 8}},
    ),
    (
        "9002",
        lambda c: c.sign_out(),
        "9002",
        {"signOut": {"sign_no": "S0001", "opter_no": "OP001"}},
    ),
]


@pytest.mark.parametrize(("name", "call", "infno", "old_input"), SAME_BYTES, ids=lambda x: x)
async def test_each_method_sends_the_old_sdks_bytes_for_the_same_data(
    name: str, call: Call, infno: str, old_input: dict[str, Any]
) -> None:
    c = Recording()
    body, msgid = await sent_by(c, call(c))
    region = "" if infno in ("1101", "9301", "9002") else REGION
    assert body == c.envelope_raw(infno, msgid, old_input, region)


async def test_money_goes_as_json_numbers_with_the_decimals_places() -> None:
    c = Recording()
    body, _ = await sent_by(c, c.upload_fees(REGION, LINES))
    for fragment in (
        b'"det_item_fee_sumamt":200.00,"cnt":2,"pric":100.00',
        b'"det_item_fee_sumamt":1.50,"cnt":3,"pric":0.50',
        b'"det_item_fee_sumamt":0.05,"cnt":5,"pric":0.01',
    ):
        assert fragment in body
    body, _ = await sent_by(c, c.settle(REGION, settle_msg.Data(**SETTLE)))
    assert b'"medfee_sumamt":1813.91,' in body


async def test_a_default_the_old_dicts_spelled_out_is_left_out_and_decodes_the_same() -> None:
    """Where the old callers sent a default explicitly (acct_used_flag "1", sign-in's
    empty mac and ip) or in another key order (1101 by card put yk_card_auth first),
    the bytes differ; the engine decodes both to the same request."""
    c = Recording()
    settle = {**SETTLE, "acct_used_flag": "1"}
    card_data = {
        "mdtrt_cert_type": "03",
        "mdtrt_cert_no": "S00000001",
        "card_sn": "AB" * 16,
        "yk_card_auth": {"challenge": "01" * 8, "process_factor": "02" * 8, "cryptogram": "03" * 8},
        "psn_cert_type": "01",
        "certno": CERT,
        "psn_name": "张三",
    }

    def card_call(c: Client) -> Awaitable[object]:
        auth = (b"\x01" * 8, b"\x02" * 8, b"\x03" * 8)
        return c.person_info_by_card("S00000001", "AB" * 16, *auth, certno=CERT, psn_name="张三")

    cases: list[tuple[Call, type[msgspec.Struct], dict[str, Any]]] = [
        (lambda c: c.settle(REGION, settle_msg.Data(**settle)), settle_msg.Input, {"data": settle}),
        (card_call, person_info_msg.Input, {"data": card_data}),
        (
            lambda c: c.sign_in(),
            sign_in_msg.Input,
            {"signIn": {"opter_no": "OP001", "mac": "", "ip": ""}},
        ),
    ]
    for call, input_type, old_input in cases:
        body, msgid = await sent_by(c, call(c))
        region = msgspec.json.decode(body, type=Envelope).insuplc_admdvs
        old_body = c.envelope_raw(wire.INFNOS[input_type], msgid, old_input, region)
        assert body != old_body
        assert sent_input(body, input_type) == sent_input(old_body, input_type)
    assert b"acct_used_flag" not in c.sent[0]
    assert b'"signIn":{"opter_no":"OP001"}' in c.sent[2]


async def test_every_field_set_is_sent_and_decodes_to_the_same_request() -> None:
    data = settle_msg.Data(
        **SETTLE,
        chrg_bchno="B001",
        invono="INV0001",
        fulamt_ownpay_amt=D("50.00"),
        overlmt_selfpay=D("500.00"),
        preselfpay_amt=D("10.00"),
        inscp_scp_amt=D("1253.91"),
    )
    c = Recording()
    body, _ = await sent_by(c, c.settle(REGION, data))
    assert sent_input(body, settle_msg.Input) == settle_msg.Input(data=data)
    assert b'"invono":"INV0001","fulamt_ownpay_amt":50.00' in body


async def test_pre_settle_of_a_2207_data_sends_only_the_2206_fields() -> None:
    """2206 refuses unknown fields, and a HIS pre-settles the data it will settle."""
    c = Recording()
    data = settle_msg.Data(**SETTLE, invono="INV0001", inscp_scp_amt=D("1.00"))
    body, _ = await sent_by(c, c.pre_settle(REGION, data))
    assert sent_input(body, presettle_msg.Input) == presettle_msg.Input(
        data=presettle_msg.Data(**SETTLE)
    )


async def test_reverse_takes_psn_no_and_region_from_the_original_body() -> None:
    c = Recording()
    body, msgid = await sent_by(c, c.settle(REGION, settle_msg.Data(**SETTLE)))
    reversal, _ = await sent_by(c, c.reverse(OutcomeUnknown("2207", msgid, body, TimeoutError())))
    sent = msgspec.json.decode(reversal)
    assert (sent["infno"], sent["insuplc_admdvs"]) == ("2601", REGION)
    assert sent["input"] == {"data": {"psn_no": PSN, "omsgid": msgid, "oinfno": "2207"}}


async def test_the_raw_path_sends_what_it_is_given() -> None:
    """For edge tests: a wrong type, a missing field, an unknown infno go out as given."""
    c = Recording()
    line = wire.as_dict(LINES[0])
    assert line == LINE_DICTS[0]
    line["cnt"] = "0"
    del line["med_list_codg"]
    body = c.envelope_raw("2204", "M1", {"feedetail": [line]}, REGION)
    assert b'"medins_list_codg":"LTJIA0001","det_item_fee_sumamt":200.00,"cnt":"0",' in body
    assert b"med_list_codg" not in body
    assert msgspec.json.decode(c.envelope_raw("9999", "M2", {}, ""))["infno"] == "9999"


async def test_typos_and_wrong_types_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(TypeError, match="psn_noo"):
        register_msg.Data(**{**REGISTER, "psn_noo": PSN})
    c = Recording()
    wrong = register_msg.Data(**{**REGISTER, "insutype": cast(Any, 310)})  # past mypy via Any
    with pytest.raises(msgspec.ValidationError, match=r"\$\.data\.insutype"):
        await c.register(REGION, wrong)
    with pytest.raises(TypeError, match="not the Input of a transaction"):
        await c.call(cast(Any, register_msg.Data(**REGISTER)), register_msg.Output)
    assert c.sent == []


def test_each_input_is_known_by_its_modules_infno() -> None:
    modules = [sign_in_msg, sign_out_msg, challenge_msg, person_info_msg]
    modules += [register_msg, unregister_msg, visit_msg, fees_msg, fees_cancel_msg]
    modules += [presettle_msg, settle_msg, cancel_msg]
    for m in modules:
        assert wire.INFNOS[m.Input] == m.INFNO
    assert len(set(wire.INFNOS.values())) == len(wire.INFNOS)


def test_the_wire_form_keeps_credentials_out_of_repr() -> None:
    auth = person_info_msg.CardAuth(
        challenge="01" * 8, process_factor="02" * 8, cryptogram="03" * 8
    )
    data = person_info_msg.Data(mdtrt_cert_type="03", mdtrt_cert_no="S00000001", yk_card_auth=auth)
    shown = repr(wire.lean(person_info_msg.Input(data=data)))
    assert "S00000001" not in shown and "03" * 8 not in shown
