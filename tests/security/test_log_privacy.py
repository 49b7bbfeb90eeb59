"""What a failed statement says (in logs and error reports) names no parameter it was sent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dispatch.core.database import transaction


async def test_a_failed_statement_hides_its_parameters(app: Any) -> None:
    # A rider's pickup as the dispatcher's batch insert carries it, in a statement that fails
    # (as that insert did on a foreign key, with every pickup of the batch in its message).
    position = "40.7580123 -73.9855456"
    with pytest.raises(DBAPIError) as failed:
        async with transaction(app.state) as session:
            await session.execute(
                text("SELECT CAST(:pickup AS text) WHERE 1 / 0 = 1"), {"pickup": position}
            )
    assert "40.7580123" not in str(failed.value)
    assert "hidden due to hide_parameters" in str(failed.value)
