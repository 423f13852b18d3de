"""uvicorn's HTTP/1.1 protocol with a deadline for request headers: a client that opens a
connection (or keeps one alive) and sends headers slower than ``limits.header_timeout_s``, or
never finishes them, is disconnected instead of holding a connection slot for ever. (uvicorn
has a keep-alive timeout, but any byte received cancels it.) The body's deadline is the
middleware's (serving/observe.py, 408)."""

from __future__ import annotations

import asyncio
import os

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_ENV = "POZYTYWKA_HEADER_TIMEOUT"  # set by `pozytywka serve` for every worker
DEFAULT_HEADER_TIMEOUT = 10.0


class HeaderDeadlineProtocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        timeout = float(os.environ.get(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT))
        self._header_deadline = self.loop.call_later(timeout, self._headers_late)

    def _disarm(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()  # type: ignore[union-attr]
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # no request has begun: nothing to answer

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request's headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # the next request's headers, on a kept-alive connection
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
