"""HSM misconfiguration is told apart from an outage (REVIEW.md §5): hsm.errors splits
the classes into transient, misconfiguration and refused input; each backend's raw
errors land in the right family (the soft backend's refusals, the remote wire's error
codes, PKCS#11 CK_RV families); engine.hsm_runtime answers misconfiguration 503
hsm_misconfigured without Retry-After and an outage 503 hsm_unavailable with it, logs
a repeated failure once per interval within a bounded memory, and /readyz's probe
names a missing terminal MAC master."""

from __future__ import annotations

import logging

import pkcs11.exceptions as px
import pytest

from engine.hsm_runtime import (
    HsmFailure,
    HsmFailureLog,
    answer_for,
    classify,
    readiness_problem,
    result_code_for,
)
from engine.metrics import EngineMetrics
from hsm import errors, pkcs11_errors, pkcs11_raw, remote_wire
from hsm.errors import HsmError, HsmMisconfigured, HsmUnavailable, KeyNotFound
from hsm.keystore import KeyEntry, KeyStore, KeyType
from hsm.protocol import KeyRef, MacAlgorithm
from hsm.soft import SoftHsm
from terminals.results import ResultCode

T = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def soft(*labels: str) -> SoftHsm:
    return SoftHsm(
        KeyStore(KeyEntry(label, 1, KeyType.aes256, "t", "", bytes(32)) for label in labels)
    )


# -- the split --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kind"),
    [
        (errors.HsmUnavailable, HsmFailure.unavailable),
        (errors.KeyNotFound, HsmFailure.misconfigured),
        (errors.KeyTypeError, HsmFailure.misconfigured),
        (errors.KeyLengthError, HsmFailure.misconfigured),
        (errors.KeyUsageError, HsmFailure.misconfigured),
        (errors.AlgorithmUnavailable, HsmFailure.misconfigured),
        (remote_wire.RemoteProtocolError, HsmFailure.misconfigured),
        (remote_wire.UnknownCommand, HsmFailure.misconfigured),
        (errors.DataLengthError, HsmFailure.input_refused),
        (errors.DataFormatError, HsmFailure.input_refused),
        (errors.PinBlockError, HsmFailure.input_refused),
        (errors.KeyBlockError, HsmFailure.input_refused),
        (remote_wire.RemoteInternalError, HsmFailure.unclassified),
        (errors.HsmError, HsmFailure.unclassified),
    ],
)
def test_every_hsm_error_class_has_one_kind(cls: type[HsmError], kind: HsmFailure) -> None:
    assert classify(cls("x")) is kind


def test_the_protocol_module_still_exports_the_classes_it_defined() -> None:
    from hsm import protocol

    assert protocol.KeyNotFound is errors.KeyNotFound
    assert protocol.HsmUnavailable is errors.HsmUnavailable


async def test_the_soft_backend_answers_an_unknown_label_as_misconfiguration() -> None:
    with pytest.raises(HsmMisconfigured) as raised:
        await soft().verify_terminal_mac(
            KeyRef("terminal.mac.master"), "T1", b"m", bytes(32), deadline_s=T
        )
    assert isinstance(raised.value, KeyNotFound)
    answer = answer_for(raised.value, failures=HsmFailureLog())
    assert (answer.code, answer.status, answer.retry_after) == (
        ResultCode.hsm_misconfigured,
        503,
        False,
    )
    assert answer.log_level == logging.ERROR
    assert "KeyNotFound" in answer.operator_message
    assert "terminal.mac.master" in answer.operator_message
    assert "terminal.mac.master" not in answer.client_message  # internals stay inside


async def test_the_soft_backend_answers_a_wrong_key_type_as_misconfiguration() -> None:
    with pytest.raises(errors.KeyTypeError) as raised:
        await soft("mac.aes").mac_generate(
            KeyRef("mac.aes"), MacAlgorithm.hmac_sha256, b"x", deadline_s=T
        )
    assert classify(raised.value) is HsmFailure.misconfigured


def test_an_outage_is_try_again_with_retry_after() -> None:
    answer = answer_for(HsmUnavailable("remote HSM: no answer"), failures=HsmFailureLog())
    assert (answer.code, answer.status, answer.retry_after, answer.log_level) == (
        ResultCode.hsm_unavailable,
        503,
        True,
        logging.WARNING,
    )
    assert "try again" in answer.client_message


def test_refused_input_is_a_field_error_and_unclassified_stays_try_again() -> None:
    refused = answer_for(errors.DataLengthError("data too long"), failures=HsmFailureLog())
    assert (refused.code, refused.status, refused.retry_after) == (
        ResultCode.field_invalid,
        200,
        False,
    )
    assert "DataLengthError" in refused.client_message
    unknown = answer_for(HsmError("token refused (RawCallError)"), failures=HsmFailureLog())
    assert (unknown.code, unknown.status, unknown.retry_after, unknown.log_level) == (
        ResultCode.hsm_unavailable,
        503,
        True,
        logging.ERROR,
    )


def test_hsm_misconfigured_has_a_stable_number_and_is_not_retryable() -> None:
    assert ResultCode.hsm_misconfigured == 9004
    assert not ResultCode.hsm_misconfigured.retryable
    assert ResultCode.hsm_unavailable.retryable and ResultCode.database_unavailable.retryable


# -- bounded logging -----------------------------------------------------------------------


def test_a_repeated_failure_is_logged_once_per_interval_with_the_count_held_back() -> None:
    clock = FakeClock()
    failures = HsmFailureLog(interval_s=60.0, clock=clock)
    exc = KeyNotFound("no key labelled 'terminal.mac.master'")
    assert answer_for(exc, failures=failures).log_level == logging.ERROR
    for _ in range(5):
        clock.now_s += 1.0
        repeat = answer_for(exc, failures=failures)
        assert repeat.log_level == logging.DEBUG
        assert repeat.status == 503 and not repeat.retry_after  # same answer, only quieter
    other = answer_for(KeyNotFound("no key labelled 'card.int.sm4'"), failures=failures)
    assert other.log_level == logging.ERROR  # another key is its own report
    clock.now_s += 60.0
    again = answer_for(exc, failures=failures)
    assert again.log_level == logging.ERROR
    assert again.operator_message.endswith("(5 more since the last report)")


def test_the_failure_log_is_bounded() -> None:
    failures = HsmFailureLog(capacity=4, clock=FakeClock())
    for n in range(10):
        answer_for(KeyNotFound(f"no key labelled 'k{n}'"), failures=failures)
        assert len(failures) <= 4
    # The oldest was forgotten: reported again rather than remembered without bound.
    assert answer_for(KeyNotFound("no key labelled 'k0'"), failures=failures).log_level == (
        logging.ERROR
    )


def test_result_code_for_notes_nothing() -> None:
    failures = HsmFailureLog(clock=FakeClock())
    exc = KeyNotFound("no key labelled 'card.int.3des'")
    assert result_code_for(exc) is ResultCode.hsm_misconfigured
    assert result_code_for(HsmUnavailable("down")) is ResultCode.hsm_unavailable
    assert len(failures) == 0
    assert answer_for(exc, failures=failures).log_level == logging.ERROR


# -- the remote wire -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls", "kind"),
    [
        (remote_wire.ErrorCode.key_not_found, errors.KeyNotFound, HsmFailure.misconfigured),
        (remote_wire.ErrorCode.key_type, errors.KeyTypeError, HsmFailure.misconfigured),
        (remote_wire.ErrorCode.key_length, errors.KeyLengthError, HsmFailure.misconfigured),
        (remote_wire.ErrorCode.key_usage, errors.KeyUsageError, HsmFailure.misconfigured),
        (
            remote_wire.ErrorCode.algorithm_unavailable,
            errors.AlgorithmUnavailable,
            HsmFailure.misconfigured,
        ),
        (remote_wire.ErrorCode.misconfigured, errors.HsmMisconfigured, HsmFailure.misconfigured),
        (
            remote_wire.ErrorCode.command_unknown,
            remote_wire.UnknownCommand,
            HsmFailure.misconfigured,
        ),
        (
            remote_wire.ErrorCode.request_malformed,
            remote_wire.RemoteProtocolError,
            HsmFailure.misconfigured,
        ),
        (remote_wire.ErrorCode.unavailable, errors.HsmUnavailable, HsmFailure.unavailable),
        (remote_wire.ErrorCode.data_length, errors.DataLengthError, HsmFailure.input_refused),
        (remote_wire.ErrorCode.pin_block, errors.PinBlockError, HsmFailure.input_refused),
        (
            remote_wire.ErrorCode.internal,
            remote_wire.RemoteInternalError,
            HsmFailure.unclassified,
        ),
    ],
)
def test_each_wire_error_code_comes_back_as_its_class_and_kind(
    code: remote_wire.ErrorCode, cls: type[HsmError], kind: HsmFailure
) -> None:
    exc = remote_wire.exception_for(code, "refused")
    assert type(exc) is cls and classify(exc) is kind
    assert remote_wire.error_code_for(exc) is code  # and the server sends it back as such


# -- PKCS#11 return values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "cls"),
    [
        (px.DeviceRemoved(), errors.HsmUnavailable),
        (px.SessionHandleInvalid(), errors.HsmUnavailable),
        (px.UserNotLoggedIn(), errors.HsmUnavailable),
        (px.TokenNotPresent(), errors.HsmUnavailable),
        (px.ObjectHandleInvalid(), errors.HsmUnavailable),
        (pkcs11_raw.KeyFunctionNotPermitted(), errors.KeyUsageError),
        (px.KeyTypeInconsistent(), errors.KeyTypeError),
        (px.KeySizeRange(), errors.KeyLengthError),
        (px.MechanismInvalid(), errors.AlgorithmUnavailable),
        (px.FunctionNotSupported(), errors.AlgorithmUnavailable),
        (px.TemplateInconsistent(), errors.HsmMisconfigured),
        (px.AttributeReadOnly(), errors.HsmMisconfigured),
        (px.DataLenRange(), errors.DataLengthError),
        (pkcs11_raw.RawCallError("C_Sign returned CK_RV 0x1234"), errors.HsmError),
    ],
)
def test_pkcs11_return_values_map_by_family(raised: px.PKCS11Error, cls: type[HsmError]) -> None:
    mapped = pkcs11_errors.hsm_error(raised, "terminal MAC with key terminal.mac.master")
    assert type(mapped) is cls
    assert "terminal MAC with key terminal.mac.master" in str(mapped)


def test_ckr_key_function_not_permitted_has_a_class() -> None:
    with pytest.raises(pkcs11_raw.KeyFunctionNotPermitted):
        pkcs11_raw.check(0x68, "C_DeriveKey")


# -- readiness -------------------------------------------------------------------------------


async def test_readiness_names_a_missing_terminal_mac_master_and_passes_with_it() -> None:
    metrics = EngineMetrics(lambda: None)
    master = KeyRef("terminal.mac.master")
    problem = await readiness_problem(soft("other"), master, deadline_s=T, metrics=metrics)
    assert problem is not None and problem.startswith("hsm misconfigured: KeyNotFound")
    assert "terminal.mac.master" in problem
    fine = soft("terminal.mac.master")
    assert await readiness_problem(fine, master, deadline_s=T, metrics=metrics) is None
