"""Saved answers are kept for a day (`COOP_IDEMPOTENCY_KEY_TTL_S`), long enough for any retry."""

from __future__ import annotations

import logging
from datetime import timedelta

from dispatch.core.clock import utcnow
from dispatch.core.database import SessionSource, transaction
from dispatch.idempotency.repository import IdempotencyRepository

log = logging.getLogger(__name__)


async def purge_expired_keys(state: SessionSource, ttl_s: float) -> int:
    """Delete keys older than `ttl_s`; never raises (the dispatcher loop calls it)."""
    try:
        async with transaction(state) as session:
            cutoff = utcnow() - timedelta(seconds=ttl_s)
            return await IdempotencyRepository(session).purge_before(cutoff)
    except Exception:
        log.warning("could not purge expired idempotency keys", exc_info=True)
        return 0
