"""How a person is shown on the wire (1101 baseinfo/insuinfo, setlinfo identity)."""

from __future__ import annotations

import datetime as dt

from settlement.cards import Insured
from settlement.money import fen_to_yuan
from terminals.messages.card import person_info as person_info_msg

# 人员类别 (psn_type): national codes vary by region; these are yikatong's [I].
PSN_TYPE_EMPLOYED = "1101"
PSN_TYPE_RETIRED = "1102"
PSN_TYPE_RESIDENT = "1401"


def age_on(brdy: dt.date, day: dt.date) -> int:
    return day.year - brdy.year - ((day.month, day.day) < (brdy.month, brdy.day))


def psn_type_of(insutype: str, retired: bool) -> str:
    if insutype != "310":
        return PSN_TYPE_RESIDENT
    return PSN_TYPE_RETIRED if retired else PSN_TYPE_EMPLOYED


def base_info(person: Insured, today: dt.date) -> person_info_msg.BaseInfo:
    return person_info_msg.BaseInfo(
        psn_no=person.psn_no,
        psn_cert_type=person.psn_cert_type,
        certno=person.certno,
        psn_name=person.psn_name,
        gend=person.gend,
        naty=person.naty,
        brdy=person.brdy.isoformat(),
        age=age_on(person.brdy, today),
    )


def insu_info(person: Insured) -> person_info_msg.InsuInfo:
    return person_info_msg.InsuInfo(
        balc=fen_to_yuan(person.acct_balance_fen),
        insutype=person.insutype,
        psn_type=psn_type_of(person.insutype, person.retired),
        psn_insu_stas=person.psn_insu_stas,
        psn_insu_date=person.psn_insu_date.isoformat(),
        paus_insu_date=None,
        cvlserv_flag=person.cvlserv_flag,
        insuplc_admdvs=person.insuplc_admdvs,
        emp_name=person.emp_name,
    )
