"""The HTTP protocol `coop-dispatch api` and `serve` run under uvicorn."""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

INVALID_REQUEST = json.dumps(
    {
        "error": "bad_request",
        "detail": "the request is not valid HTTP/1.1 (for example, a control character in a "
        "header value)",
    }
).encode()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a request it cannot parse with our JSON error
    body instead of uvicorn's plain text."""

    def send_400_response(self, msg: str) -> None:
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(INVALID_REQUEST)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                INVALID_REQUEST,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
