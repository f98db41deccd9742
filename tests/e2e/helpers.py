"""Building blocks of outpatient visits for the e2e tests."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Any

import msgspec

from simulators.population import Person
from terminals.checks import identity_failures
from terminals.client import Client, yuan
from terminals.messages import setl
from terminals.messages.outpatient import fees as fees_msg
from terminals.messages.outpatient import register as register_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.outpatient import visit as visit_msg

NOW = "2026-11-29 09:30:00"


@dataclass
class Visit:
    person: Person
    region: str
    mdtrt_id: str
    ipt_otp_no: str
    total: decimal.Decimal

    def settle_data(self, **overrides: Any) -> settle_msg.Data:
        data = settle_msg.Data(
            psn_no=self.person.psn_no,
            mdtrt_cert_type="02",
            mdtrt_cert_no=self.person.certno,
            med_type="11",
            medfee_sumamt=self.total,
            mdtrt_id=self.mdtrt_id,
            insutype=self.person.insutype,
            acct_used_flag="1",
        )
        return msgspec.structs.replace(data, **overrides)


_counter = 0


def fee_line(
    n: int, visit_id: str, psn_no: str, code: str, pric: str, cnt: str = "1"
) -> fees_msg.FeeDetail:
    p, c = decimal.Decimal(pric), decimal.Decimal(cnt)
    return fees_msg.FeeDetail(
        feedetl_sn=f"{n:04d}",
        mdtrt_id=visit_id,
        psn_no=psn_no,
        chrg_bchno="B001",
        fee_ocur_time=NOW,
        med_list_codg=code,
        medins_list_codg=f"L{code}",
        det_item_fee_sumamt=yuan(p * c),
        cnt=c,
        pric=p,
    )


def registration(person: Person, ipt_otp_no: str, **overrides: Any) -> register_msg.Data:
    """2201 data for `person` by ID number at NOW (or the credential in `overrides`)."""
    data = register_msg.Data(
        psn_no=person.psn_no,
        insutype=person.insutype,
        begntime=NOW,
        mdtrt_cert_type="02",
        mdtrt_cert_no=person.certno,
        ipt_otp_no=ipt_otp_no,
    )
    return msgspec.structs.replace(data, **overrides)


def visit_info(mdtrt_id: str, psn_no: str) -> tuple[visit_msg.MdtrtInfo, list[visit_msg.DiseInfo]]:
    """2203 for a general outpatient visit (11) with one main diagnosis."""
    info = visit_msg.MdtrtInfo(mdtrt_id=mdtrt_id, psn_no=psn_no, med_type="11", begntime=NOW)
    diagnosis = visit_msg.DiseInfo(
        diag_type="1",
        diag_srt_no=1,
        diag_code="J06.900",
        diag_name="急性上呼吸道感染",
        diag_time=NOW,
    )
    return info, [diagnosis]


async def open_visit(
    client: Client,
    person: Person,
    items: list[tuple[str, str, str]],
    *,
    registration_overrides: dict[str, str] | None = None,
) -> Visit:
    """1101 → 2201 → 2203 → 2204 with `items` as (catalog code, unit price, quantity);
    registered by ID number unless `registration_overrides` names another credential."""
    global _counter
    _counter += 1
    ipt_otp_no = f"E2E{_counter:07d}"  # taken before any await: visits opened at once differ
    info = await client.person_info_by_id_number(person.certno)
    region = info.insuinfo[0].insuplc_admdvs
    reg = await client.register(
        region, registration(person, ipt_otp_no, **(registration_overrides or {}))
    )
    mdtrt_id = reg.data.mdtrt_id
    await client.visit_info(region, *visit_info(mdtrt_id, person.psn_no))
    lines = [fee_line(i + 1, mdtrt_id, person.psn_no, *item) for i, item in enumerate(items)]
    if lines:
        await client.upload_fees(region, lines)
    total = sum((x.det_item_fee_sumamt for x in lines), decimal.Decimal(0))
    return Visit(person, region, mdtrt_id, ipt_otp_no, yuan(total))


def fen(value: decimal.Decimal) -> int:
    return int(value * 100)


def assert_identities(info: setl.SetlInfo) -> None:
    assert identity_failures(info) == []


def valid_line(visit: Visit) -> fees_msg.FeeDetail:
    """One valid 甲 line of 100.00 for `visit`, to be broken by a test."""
    return fee_line(1, visit.mdtrt_id, visit.person.psn_no, "TJIA0001", "100.00")
