"""The WebSocket protocol `coop-dispatch api` and `serve` run under uvicorn."""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, which also answers an upgrade that websockets refuses
    before it is a request: a request line over 8 KiB (414), a header line over 8 KiB or more
    than 128 headers (431); a request it cannot parse otherwise is closed. uvicorn 0.54 looks
    only for frame errors there, so the refusal websockets wrote stayed in its buffer and the
    connection was held, unanswered, until the client gave up."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        refused = self.conn.handshake_exc is not None and not self.handshake_initiated
        if refused and not self.close_sent:
            self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
