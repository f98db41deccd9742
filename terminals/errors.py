"""The errors the client SDK raises (terminals.client re-exports them).

`BusinessError` (infcode -1, with the stable `ResultCode`; nothing was changed),
`AuthenticationError` (401), `RequestRejected` (400), `ServiceUnavailable` (503 or a
refused connection: nothing happened, safe to retry later), and `OutcomeUnknown` for a
state-changing call whose answer was lost (DOMAIN.md §2.9): it keeps the original
msgid and body so that the caller can reverse or resend exactly that request.
"""

from __future__ import annotations

from terminals.envelope import Answer
from terminals.results import ResultCode


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
