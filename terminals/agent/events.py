"""Card inserted / removed events for the HIS: a watcher thread blocks on the reader
(`wait_for_card` / `wait_for_removal`, which PC/SC implements with
SCardGetStatusChange, so no polling of the card itself) and appends to a bounded log
that HTTP clients long-poll by sequence number.

Invariants: the log holds at most `EVENT_LOG_MAX` events (older ones are dropped and a
client asking from before them gets what is left, with `dropped` set); sequence
numbers only grow; the watcher thread stops within `poll_s` of `stop()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import threading
from typing import Literal

import msgspec

from card.reader import Reader, ReaderError
from terminals.agent import limits

EVENT_LOG_MAX = limits.EVENT_LOG_MAX
EventKind = Literal["card_inserted", "card_removed", "reader_unavailable", "reader_available"]


class CardEvent(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    kind: EventKind
    reader: str
    at: str  # ISO 8601 with offset


class EventBatch(msgspec.Struct, frozen=True, kw_only=True):
    events: list[CardEvent]
    last_seq: int
    dropped: bool  # events after `after` were dropped from the bounded log


class EventLog:
    def __init__(self, reader_name: str, *, limit: int = EVENT_LOG_MAX) -> None:
        self._reader = reader_name
        self._events: collections.deque[CardEvent] = collections.deque(maxlen=limit)
        self._seq = 0
        self._changed = asyncio.Condition()

    @property
    def last_seq(self) -> int:
        return self._seq

    async def publish(self, kind: EventKind) -> None:
        async with self._changed:
            self._seq += 1
            now = dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="milliseconds")
            self._events.append(CardEvent(seq=self._seq, kind=kind, reader=self._reader, at=now))
            self._changed.notify_all()

    def _after(self, after: int) -> EventBatch:
        events = [e for e in self._events if e.seq > after]
        dropped = bool(self._events) and self._events[0].seq > after + 1
        return EventBatch(events=events, last_seq=self._seq, dropped=dropped)

    async def wait_after(self, after: int, timeout_s: float) -> EventBatch:
        """Events with seq > `after`; waits up to `timeout_s` for the first one."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self._seq > after), timeout_s)
            return self._after(after)


class ReaderWatcher:
    """Publishes presence changes of one reader into an EventLog from its own thread.

    Give it a Reader object of its own (for PC/SC: a second PcscReader on the same
    reader name, i.e. its own context and worker): a PcscReader serves one thread at a
    time, and sharing one would queue every card command behind the watcher's wait."""

    def __init__(self, reader: Reader, log: EventLog, *, poll_s: float = 0.5) -> None:
        self._reader = reader
        self._log = log
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.present: bool | None = None  # last seen presence; None before the first look

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{self._reader.name}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self._poll_s * 4)

    def _emit(self, kind: EventKind) -> None:
        if self._loop is None:  # _run is only started by start(), which sets it
            raise AssertionError("ReaderWatcher emitted before start()")
        asyncio.run_coroutine_threadsafe(self._log.publish(kind), self._loop)

    def _run(self) -> None:
        present: bool | None = None
        available = True
        while not self._stop.is_set():
            try:
                now_present = self._reader.card_present()
                if not available:
                    available = True
                    self._emit("reader_available")
                changed = present is not None and now_present != present
                present = self.present = now_present  # before the event: status agrees
                if changed:
                    self._emit("card_inserted" if now_present else "card_removed")
                if now_present:
                    self._reader.wait_for_removal(self._poll_s)
                else:
                    self._reader.wait_for_card(self._poll_s)
            except ReaderError:
                if available:
                    available = False
                    self.present = None
                    self._emit("reader_unavailable")
                self._stop.wait(1.0)
