"""Query parameter types that accept exactly what the OpenAPI document says they accept."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_8601_only(value: object) -> object:
    # Pydantic also takes numbers as Unix timestamps ("before=0.5", "before=-167754"); the
    # contract says date-time.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and ISO_DATE.match(value):
        return value
    raise ValueError("must be an ISO 8601 date-time, like 2026-11-27T10:00:00Z")


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_8601_only)]
# The same for JSON bodies whose times must carry their timezone.
AwareIsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]
