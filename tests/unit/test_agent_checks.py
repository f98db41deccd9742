"""The card agent's checks of what it is given, as pure functions: `--listen` (loopback
unless explicitly allowed, then a warning), `--allow-origin` (exact origins only, no
wildcard or null), the PIN's form (ASCII digits only) and the per-request deadline."""

from __future__ import annotations

import pytest

from terminals.agent import limits
from terminals.agent.access import normalize_origin
from terminals.agent.cli import listen_address
from terminals.agent.core import check_deadline, check_pin
from terminals.agent.results import AgentError


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("127.0.0.1:7101", "127.0.0.1", 7101),
        ("[::1]:80", "::1", 80),
        ("localhost:1", "localhost", 1),
    ],
)
def test_loopback_listen_addresses_are_taken_quietly(
    value: str, host: str, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert listen_address(value, allow_non_loopback=False) == (host, port, True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("value", ["0.0.0.0:7101", "[::]:7101", "192.168.1.5:7101", "kiosk:1"])
def test_a_non_loopback_listen_needs_the_flag_and_then_warns(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match="--allow-non-loopback-listen"):
        listen_address(value, allow_non_loopback=False)
    _, _, loopback = listen_address(value, allow_non_loopback=True)
    assert loopback is False
    assert "WARNING" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["7101", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", ":80"])
def test_a_malformed_listen_is_refused(value: str) -> None:
    with pytest.raises(SystemExit, match="host:port"):
        listen_address(value, allow_non_loopback=True)


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://Kiosk.Example", "https://kiosk.example"),
        ("https://kiosk.example:443/", "https://kiosk.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_allowed_origins_are_serialised_as_browsers_send_them(given: str, origin: str) -> None:
    assert normalize_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    ["*", "null", "https://*.example", "kiosk.example", "file:///ui", "https://k.example/ui",
     "https://user@k.example", "https://k.example?x=1", "ftp://k.example"],
)  # fmt: skip
def test_wildcards_null_and_urls_are_not_origins(given: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        normalize_origin(given)


@pytest.mark.parametrize("pin", ["1234", "0000000000000000", "987654"])
def test_ascii_digit_pins_pass(pin: str) -> None:
    check_pin(pin, required=True)


@pytest.mark.parametrize("pin", ["١٢٣٤", "１２３４", "²³⁴⁵", "12 34", "123", "1" * 17, "-123"])
def test_other_pins_are_refused_naming_the_field(pin: str) -> None:
    with pytest.raises(AgentError) as err:
        check_pin(pin, required=False)
    assert err.value.result == "field_invalid" and err.value.message.startswith("pin:")
    assert pin not in err.value.message


def test_no_pin_is_refused_only_in_require_pin_mode() -> None:
    check_pin(None, required=False)
    with pytest.raises(AgentError) as err:
        check_pin(None, required=True)
    assert err.value.result == "pin_required" and err.value.http_status == 400


def test_a_deadline_outside_its_bounds_is_refused() -> None:
    assert check_deadline(None, 5.0) == 5.0
    assert check_deadline(limits.ENGINE_DEADLINE_MAX_S, 5.0) == limits.ENGINE_DEADLINE_MAX_S
    for bad in (0.0, limits.ENGINE_DEADLINE_MIN_S / 2, limits.ENGINE_DEADLINE_MAX_S + 1):
        with pytest.raises(AgentError, match="deadline_s"):
            check_deadline(bad, 5.0)
