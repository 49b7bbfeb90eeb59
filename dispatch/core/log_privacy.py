"""Keep credentials and positions out of the logs the server (uvicorn) writes for us.

Clients that cannot set headers pass their access token as `?token=` on the WebSocket URL, and
uvicorn logs that URL on every connection; at debug level it also traces raw WebSocket frames,
which carry drivers' positions. This filter, on the handlers of the server's loggers, masks the
token and drops the frame traces.
"""

from __future__ import annotations

import logging
import re

TOKEN_IN_QUERY = re.compile(r"(?i)\b((?:access_)?token=)[^&\s\"']+")
AUTHORIZATION_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization:\s*(?:bearer\s+|basic\s+)?)\S+")
FRAME_TRACE = re.compile(r"^[<>] (TEXT|BINARY|CONT)\b")
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets")
# uvicorn's access formatter unpacks the record's args, so those keep their shape.
ARGS_UNPACKED_BY = ("uvicorn.access",)


def redact(text: str) -> str:
    text = TOKEN_IN_QUERY.sub(r"\1[redacted]", text)
    return AUTHORIZATION_HEADER.sub(r"\1[redacted]", text)


class LogPrivacyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in ARGS_UNPACKED_BY and isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        if record.levelno <= logging.DEBUG and FRAME_TRACE.match(message):
            return False
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_filter = LogPrivacyFilter()


def install_log_privacy() -> None:
    """Idempotent; call once the server has configured logging (at app startup)."""
    targets: list[logging.Filterer] = []
    for name in (None, *SERVER_LOGGERS):
        logger = logging.getLogger(name)
        targets.append(logger)
        targets.extend(logger.handlers)
    for target in targets:
        if _filter not in target.filters:
            target.addFilter(_filter)
