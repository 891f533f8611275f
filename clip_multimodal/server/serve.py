"""Running the app under uvicorn, with a deadline for each request's headers.

uvicorn closes an idle keep-alive connection, but a connection that opens and then sends a
request line a byte at a time is held forever: 300 such connections stayed open for minutes.
`HeaderDeadline` gives every connection `header_timeout_s` to finish a request's headers,
counted from when it opened or from its last response.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clip_multimodal.server.settings import ServerSettings

__all__ = ["HeaderDeadline", "serve", "uvicorn_config"]

log = logging.getLogger("clip_multimodal.server")


class HeaderDeadline:
    """A mixin for uvicorn's HTTP protocols: close a connection slow to send its headers.

    The protocol makes a new request cycle when a request's headers are complete; until the
    cycle changes, the deadline runs.
    """

    header_timeout_s: float = 10.0
    transport: Any
    cycle: Any
    loop: asyncio.AbstractEventLoop
    _header_timer: asyncio.TimerHandle | None = None
    _awaited_after: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self._header_timer is not None and self.cycle is not self._awaited_after:
            self._cancel_header_timer()  # the headers are in: the request timeout takes over

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing() and self._header_timer is None:
            self._arm_header_timer()  # the next request's headers get the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_header_timer(self) -> None:
        self._awaited_after = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is self._awaited_after and not self.transport.is_closing():
            log.debug("closing a connection that sent no complete headers in time")
            self.transport.close()


def _protocol(seconds: float) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    attrs = {"header_timeout_s": seconds}
    guarded: type[asyncio.Protocol] = type(
        "HeaderDeadlineProtocol", (HeaderDeadline, AutoHTTPProtocol), attrs
    )
    return guarded


def uvicorn_config(
    app: Any, settings: ServerSettings, *, host: str, port: int, log_level: str = "info"
) -> Any:
    """The `uvicorn.Config` `clip-multimodal serve` runs: the header deadline, no websockets."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=_protocol(settings.header_timeout_s),
        ws="none",
        timeout_keep_alive=5,
    )


def serve(
    app: Any, settings: ServerSettings, *, host: str, port: int, log_level: str = "info"
) -> None:
    """Serve `app` until interrupted."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, settings, host=host, port=port, log_level=log_level)).run()
