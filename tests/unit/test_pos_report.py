"""The demo report's amounts by flow and fund, without an engine: the HIS simulator's
kept visits are the outpatient flow, the POS simulator's settlements go to the flow of
their answer's clearing type (41 pharmacy, anything else outpatient), and the table's
"all" row is the sum of the flows, fund by fund, to the fen."""

from __future__ import annotations

import decimal

import msgspec
import pytest

from simulators.his import Stats
from simulators.pos import Money, PosStats, flow_of
from simulators.report import flows, print_flows, yuan
from terminals.messages.setl import SetlInfo

D = decimal.Decimal


def _answer(clr_type: str, medfee: str, fund: str, acct: str, cash: str) -> SetlInfo:
    """A settlement answer with these amounts (every other amount zero)."""
    fields: dict[str, object] = {}
    for f in msgspec.structs.fields(SetlInfo):
        fields[f.name] = D("0.00") if f.type is decimal.Decimal else ""
    fields.update(setl_id="S1", age=40, clr_type=clr_type)
    fields.update(
        medfee_sumamt=D(medfee), fund_pay_sumamt=D(fund), acct_pay=D(acct), psn_cash_pay=D(cash)
    )
    return SetlInfo(**fields)  # type: ignore[arg-type]


def test_flow_is_the_clearing_type_of_the_answer() -> None:
    assert flow_of(_answer("41", "10.00", "1.00", "2.00", "7.00")) == "pharmacy"
    assert flow_of(_answer("11", "10.00", "1.00", "2.00", "7.00")) == "outpatient"


def test_his_visits_and_pos_baskets_add_up_by_flow_and_fund(
    capsys: pytest.CaptureFixture[str],
) -> None:
    his = Stats(settlements=5, cancellations=1)
    his.medfee_fen, his.fund_fen, his.account_fen, his.cash_fen = 100_00, 40_00, 10_00, 50_00
    pos = PosStats()
    pos.by_flow["pharmacy"].add(_answer("41", "30.10", "10.00", "20.00", "0.10"))
    pos.by_flow["pharmacy"].add(_answer("41", "5.00", "0.00", "0.00", "5.00"))
    by_flow = flows(his, pos)
    assert by_flow == {
        "outpatient": Money(4, 100_00, 40_00, 10_00, 50_00),
        "pharmacy": Money(2, 35_10, 10_00, 20_00, 5_10),
    }
    print_flows(by_flow)
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["outpatient"] == ["4", "100.00", "40.00", "10.00", "50.00"]
    assert rows["pharmacy"] == ["2", "35.10", "10.00", "20.00", "5.10"]
    assert rows["all"] == ["6", "135.10", "50.00", "30.00", "55.10"]


def test_yuan_formats_fen_with_thousands_and_sign() -> None:
    assert [yuan(x) for x in (0, 5, 123_456_78, -1_05)] == ["0.00", "0.05", "123,456.78", "-1.05"]
