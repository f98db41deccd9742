"""Who may use the card agent (issue 11 point 1), through the real agent HTTP app on a
loopback socket, a real pcscd with the virtual card in the vpcd reader and a real
engine process:

- every request the issue lists as an attack from a local process or a web page —
  no token, a wrong token, a DNS-rebinding Host, a cross-site fetch, a foreign
  Origin — is refused before the card is touched, and the engine issued no challenge;
- a kiosk UI on its allowed origin gets its CORS preflight answered with that exact
  origin, and then its requests through;
- require-PIN mode gives no holder data without a PIN verified in the flow;
- one audit line per card flow, without the holder's ID number, name, card number or
  serial, the PIN or the token;
- /v1/status says whether the engine answers (and is not fooled by a dead port);
- `yikatong agent` itself creates its token file 0600, serves with it, refuses a
  token file others can read and a non-loopback --listen unless explicitly allowed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from card.ecard import EcardPayload, ecard_signing_input, encode_ecard_token
from hsm import tr31
from hsm.keys import aes, hmac_key
from hsm.tr31_header import KeyBlockHeader
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.pcscd import PcscdManager
from simulators.population import Card
from tests.e2e.conftest import Deployment, deployment  # noqa: F401  (fixture)
from tests.e2e.test_card_agent import (
    KIOSK_ORIGIN,
    AgentRig,
    Picker,
    challenges_for,
    masters,  # noqa: F401  (fixture)
    pcsc_rig,
    picker,  # noqa: F401  (fixture)
    usable,
    wrong_pin,
)
from tests.pcsc_support import InsertCard
from tests.support import free_port, http_get

pytestmark = pytest.mark.slow


@pytest.fixture
async def kiosk(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    tmp_path: Path,
) -> AsyncIterator[AgentRig]:
    """A kiosk's agent: require-PIN mode, its UI allowed from KIOSK_ORIGIN."""
    async with (
        deployment.client() as client,
        pcsc_rig(
            pcscd.readers[0], client, deployment.engine.url, tmp_path, require_pin=True
        ) as rig,
    ):
        yield rig


def inserted(
    d: Deployment,
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    generation: int,
) -> tuple[Card, int]:
    i = picker.index(usable(generation))
    card = d.pop.card(i)
    insert_card(build_card(card, d.pop.persons[i], masters))
    return card, i


def personal(d: Deployment, card: Card, i: int) -> list[str]:
    person = d.pop.persons[i]
    return [person.certno, person.psn_name, card.card_no, card.card_sn, card.pin]


async def test_every_attack_of_the_issue_is_refused_before_the_card_is_touched(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    kiosk: AgentRig,
) -> None:
    card, i = inserted(deployment, masters, picker, insert_card, 2)
    token = {"Authorization": f"Bearer {kiosk.token}"}
    rebinding = {"Host": f"evil.example:{kiosk.port}"}
    attacks: list[tuple[str, str, dict[str, str], bool, int, str]] = [
        # (method, path, headers, send the token, status, error.result)
        ("POST", "/v1/card", {}, False, 401, "token_missing"),
        ("POST", "/v1/person-info", {}, False, 401, "token_missing"),
        ("GET", "/v1/status", {}, False, 401, "token_missing"),
        ("POST", "/v1/person-info", {"Authorization": "Bearer wrong"}, False, 401, "token_invalid"),
        (
            "POST",
            "/v1/card",
            {"Authorization": f"Basic {kiosk.token}"},
            False,
            401,
            "token_invalid",
        ),
        (
            "POST",
            "/v1/card",
            {"Authorization": f"Bearer {kiosk.token}x"},
            False,
            401,
            "token_invalid",
        ),
        # DNS rebinding: the page's own name, even if it had the token.
        ("GET", "/v1/status", rebinding, False, 421, "host_refused"),
        ("GET", "/v1/events", rebinding, True, 421, "host_refused"),
        ("POST", "/v1/card", rebinding, True, 421, "host_refused"),
        ("POST", "/v1/card", {"Host": "127.0.0.1:1"}, True, 421, "host_refused"),
        ("POST", "/v1/card", {"Sec-Fetch-Site": "cross-site"}, True, 403, "cross_site_refused"),
        ("POST", "/v1/card", {"Origin": "http://evil.example"}, True, 403, "origin_refused"),
        ("POST", "/v1/card", {"Origin": "null"}, True, 403, "origin_refused"),
        ("POST", "/v1/card", {"Origin": KIOSK_ORIGIN + ".evil"}, True, 403, "origin_refused"),
        ("POST", "/v1/card", {"Content-Type": "text/plain"}, True, 415, "content_type_refused"),
    ]
    for method, path, headers, auth, status, result in attacks:
        got = await kiosk.call(method, path, {}, headers=headers, auth=auth)
        what = f"{method} {path} {headers}"
        assert (got.status, got.result) == (status, result), (what, got.body)
        assert "Access-Control-Allow-Origin" not in got.headers, what
        assert got.body["request_id"] == got.headers["X-Request-Id"]
        for secret in personal(deployment, card, i):
            assert secret not in str(got.body), what
        if status == 401:
            assert got.headers["WWW-Authenticate"].startswith("Bearer"), what
    assert await challenges_for(deployment, card) == 0
    # The same agent, asked properly, serves (and the card was fine all along).
    good = await kiosk.post("/v1/person-info", {"pin": card.pin}, headers=token)
    assert good.status == 200 and good.body["holder"]["certno"] == deployment.pop.persons[i].certno


async def test_allowed_origin_gets_its_preflight_and_its_answers(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    kiosk: AgentRig,
) -> None:
    card, i = inserted(deployment, masters, picker, insert_card, 3)
    asking = {
        "Origin": KIOSK_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
        "Access-Control-Request-Private-Network": "true",
    }
    pre = await kiosk.call("OPTIONS", "/v1/person-info", headers=asking, auth=False)
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == KIOSK_ORIGIN
    assert set(pre.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST"}
    allowed = {h.lower() for h in pre.headers["Access-Control-Allow-Headers"].split(", ")}
    assert {"authorization", "content-type"} <= allowed
    assert "Origin" in pre.headers.getall("Vary")
    assert pre.headers["Access-Control-Allow-Private-Network"] == "true"
    # The UI's real request: cross-site by definition, from its allowed origin.
    ui = {"Origin": KIOSK_ORIGIN, "Sec-Fetch-Site": "cross-site"}
    got = await kiosk.post("/v1/person-info", {"pin": card.pin}, headers=ui)
    assert got.status == 200, got.body
    assert got.headers["Access-Control-Allow-Origin"] == KIOSK_ORIGIN
    assert got.body["person"]["baseinfo"]["psn_no"] == deployment.pop.persons[i].psn_no
    # Its errors are readable too (with the header the UI needs), and still need the token.
    refused = await kiosk.post("/v1/person-info", {"pin": card.pin}, headers=ui, auth=False)
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == KIOSK_ORIGIN
    # Another origin, or asking for more, gets no CORS grant.
    for headers, result in (
        ({**asking, "Origin": "https://other.example"}, "origin_refused"),
        ({**asking, "Access-Control-Request-Headers": "x-evil"}, "preflight_refused"),
        ({**asking, "Access-Control-Request-Method": "DELETE"}, "preflight_refused"),
        ({k: v for k, v in asking.items() if k != "Origin"}, "preflight_refused"),
    ):
        no = await kiosk.call("OPTIONS", "/v1/person-info", headers=headers, auth=False)
        assert no.status == 403 and no.result == result, headers
        assert no.headers.get("Access-Control-Allow-Origin") in (None, KIOSK_ORIGIN)
        if headers.get("Origin") != KIOSK_ORIGIN:
            assert "Access-Control-Allow-Origin" not in no.headers


async def test_require_pin_mode_gives_no_person_data_without_a_verified_pin(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    kiosk: AgentRig,
) -> None:
    """Generation 2, whose EF06 the card gives without the engine: still withheld."""
    card, i = inserted(deployment, masters, picker, insert_card, 2)
    person = deployment.pop.persons[i]
    read = await kiosk.post("/v1/card")
    assert read.status == 200 and read.body["holder"] is None
    assert read.body["holder_withheld"] is True
    no_pin = await kiosk.post("/v1/person-info", {})
    assert no_pin.status == 400 and no_pin.result == "pin_required"
    assert "pin" in no_pin.body["error"]["message"]
    wrong = await kiosk.post("/v1/person-info", {"pin": wrong_pin(card)})
    assert wrong.status == 422 and wrong.result == "pin_verify_failed"
    for got in (read, no_pin, wrong):
        assert person.certno not in str(got.body) and person.psn_name not in str(got.body)
        assert "person" not in got.body
    status = await kiosk.get("/v1/status")
    assert status.body["require_pin"] is True
    right = await kiosk.post("/v1/person-info", {"pin": card.pin})
    assert right.status == 200 and right.body["pin_verified"] is True
    assert right.body["holder"]["certno"] == person.certno


async def test_one_audit_line_per_card_flow_without_personal_data(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    kiosk: AgentRig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    card, i = inserted(deployment, masters, picker, insert_card, 3)
    caplog.set_level(logging.DEBUG)
    ok = await kiosk.post("/v1/person-info", {"pin": card.pin}, headers={"X-Request-Id": "kiosk-1"})
    wrong = await kiosk.post("/v1/person-info", {"pin": wrong_pin(card)})
    read = await kiosk.post("/v1/card")
    unauthenticated = await kiosk.post("/v1/person-info", {"pin": card.pin}, auth=False)
    assert [a.status for a in (ok, wrong, read, unauthenticated)] == [200, 422, 200, 401]
    audit = [r for r in caplog.records if r.name == "terminals.agent.audit"]
    fields = [r.fields for r in audit]  # type: ignore[attr-defined]
    flows = [f for f in fields if f["event"] == "card_flow"]
    assert [(f["endpoint"], f["result"]) for f in flows] == [
        ("/v1/person-info", "ok"),
        ("/v1/person-info", "pin_verify_failed"),
        ("/v1/card", "ok"),
    ]
    assert (
        flows[0]["request_id"] == "kiosk-1" and flows[1]["request_id"] == wrong.body["request_id"]
    )
    assert [(f["pin_required"], f["pin_verified"]) for f in flows] == [
        (True, True),
        (True, False),
        (True, False),
    ]
    assert flows[1]["source"] == "card" and flows[1]["code"] == -51
    assert all(f["elapsed_ms"] > 0 for f in flows)
    assert [f["result"] for f in fields if f["event"] == "refused"] == ["token_missing"]
    everything = caplog.text + repr(fields) + "".join(r.getMessage() for r in caplog.records)
    for secret in [*personal(deployment, card, i), wrong_pin(card), kiosk.token]:
        assert secret not in everything


async def test_status_tells_whether_the_engine_answers(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    kiosk: AgentRig,
    tmp_path: Path,
) -> None:
    status = await kiosk.get("/v1/status")
    assert status.status == 200
    engine = status.body["engine"]
    assert engine["reachable"] is True and engine["ready"] is True and engine["error"] is None
    again = await kiosk.get("/v1/status")  # from the cache: no second probe
    assert again.body["engine"]["age_s"] > 0
    assert again.body["engine"]["latency_ms"] == engine["latency_ms"]
    dead_url = f"http://127.0.0.1:{free_port()}"
    async with (
        deployment.client() as client,
        pcsc_rig(pcscd.readers[1], client, dead_url, tmp_path) as lonely,
    ):
        started = time.monotonic()
        dead = await lonely.get("/v1/status")
        assert time.monotonic() - started < 2.0
        assert dead.body["engine"]["reachable"] is False and dead.body["engine"]["ready"] is False
        assert dead.body["engine"]["error"]


# -- `yikatong agent` as a process ---------------------------------------------------------


def agent_command(d: Deployment, reader: str, tmp: Path, *extra: str) -> list[str]:
    inst = d.hospital(0)
    key_file = tmp / "terminal.key"
    if not key_file.exists():
        key_file.write_text(d.terminal_keys(inst.terminal_id).hex())
        key_file.chmod(0o600)
    return [
        sys.executable,
        "-m",
        "engine",
        "agent",
        "--engine-url",
        d.engine.url,
        "--reader",
        reader,
        "--terminal-id",
        inst.terminal_id,
        "--key-file",
        str(key_file),
        "--fixmedins-code",
        inst.fixmedins_code,
        "--fixmedins-name",
        inst.fixmedins_name,
        "--admdvs",
        inst.admdvs,
        "--opter",
        inst.opter,
        *extra,
    ]


def agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("YIKATONG_")}


def test_the_agent_process_creates_its_token_file_0600_and_serves_with_it(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    tmp_path: Path,
) -> None:
    port = free_port()
    token_file = tmp_path / "state" / "agent.token"
    command = agent_command(
        deployment,
        pcscd.readers[0],
        tmp_path,
        "--listen",
        f"127.0.0.1:{port}",
        "--token-file",
        str(token_file),
    )
    proc = subprocess.Popen(
        command, env=agent_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "card agent on" in banner and "require-pin on" in banner, banner
        assert (token_file.stat().st_mode & 0o777) == 0o600
        assert (token_file.parent.stat().st_mode & 0o077) == 0
        token = token_file.read_text().strip()
        assert token not in banner
        status, _, body = http_get(f"http://127.0.0.1:{port}/v1/status")
        assert status == 401 and b"token_missing" in body
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/status", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200 and b'"require_pin":true' in resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert token not in out


def test_the_agent_process_refuses_an_open_token_file_and_a_non_loopback_listen(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    tmp_path: Path,
) -> None:
    open_file = tmp_path / "open.token"
    open_file.write_text("A" * 43 + "\n")
    open_file.chmod(0o640)
    refused = subprocess.run(
        agent_command(
            deployment,
            pcscd.readers[0],
            tmp_path,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--token-file",
            str(open_file),
        ),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert "--token-file" in refused.stderr and "group or others" in refused.stderr
    everywhere = subprocess.run(
        agent_command(deployment, pcscd.readers[0], tmp_path, "--listen", "0.0.0.0:7101"),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert everywhere.returncode != 0
    assert "--allow-non-loopback-listen" in everywhere.stderr


def test_a_non_loopback_listen_needs_the_flag_and_then_warns(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    tmp_path: Path,
) -> None:
    port = free_port()
    command = agent_command(
        deployment,
        pcscd.readers[0],
        tmp_path,
        "--listen",
        f"0.0.0.0:{port}",
        "--allow-non-loopback-listen",
        "--token-file",
        str(tmp_path / "agent.token"),
    )
    proc = subprocess.Popen(
        command, env=agent_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert "card agent on" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "WARNING" in err and "NOT loopback" in err


def forged_token() -> str:
    now = int(time.time())
    payload = EcardPayload(
        "FORGED0123456789", "510104199001011234", "王伟", "510100", now, now + 60
    )
    stranger = ec.generate_private_key(ec.SECP256R1())  # not the issuing platform's key
    signature = stranger.sign(ecard_signing_input(payload), ec.ECDSA(hashes.SHA256()))
    return encode_ecard_token(payload, signature)


def test_the_agent_process_signs_with_a_key_installed_wrapped(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    tmp_path: Path,
) -> None:
    """The terminal key as key injection leaves it: a TR-31 version D block (a MAC key)
    in the key file, unwrapped in memory under the KBPK file. A signed 9001 + 1101 by
    e-card reaches the engine's decision (a well-formed token with a forged signature,
    refused as such) — with a wrong key the sign-in would be refused as
    signature_invalid."""
    inst = deployment.hospital(0)
    kbpk = bytes(range(0x40, 0x60))
    (tmp_path / "kbpk").write_text(kbpk.hex())
    (tmp_path / "kbpk").chmod(0o600)
    header = KeyBlockHeader(version="D", key_usage="M7", algorithm="H", mode_of_use="C")
    block = tr31.wrap(aes(kbpk), header, hmac_key(deployment.terminal_keys(inst.terminal_id)))
    (tmp_path / "terminal.key").write_text(block + "\n")
    (tmp_path / "terminal.key").chmod(0o600)
    port = free_port()
    token_file = tmp_path / "agent.token"
    command = agent_command(
        deployment,
        pcscd.readers[0],
        tmp_path,
        *("--kbpk-file", str(tmp_path / "kbpk")),
        *("--listen", f"127.0.0.1:{port}", "--token-file", str(token_file)),
    )
    proc = subprocess.Popen(
        command, env=agent_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        assert "card agent on" in proc.stdout.readline()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/ecard",
            data=json.dumps({"qr": forged_token()}).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {token_file.read_text().strip()}",
                "Content-Type": "application/json",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        body = refused.value.read()
        assert refused.value.code == 422, body
        assert b'"source":"engine"' in body and b"ecard_token_signature_invalid" in body, body
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert block not in out
