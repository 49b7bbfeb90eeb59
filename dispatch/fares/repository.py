from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from geoalchemy2.functions import ST_AsGeoJSON, ST_Covers, ST_MakePoint, ST_SetSRID
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.fares.models import FarePolicy, Quote, Region


class FareRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def policy_in_force(self, at: datetime) -> FarePolicy | None:
        query = (
            select(FarePolicy)
            .where(FarePolicy.effective_at <= at)
            .order_by(FarePolicy.effective_at.desc(), FarePolicy.version.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def latest_policy(self) -> FarePolicy | None:
        query = select(FarePolicy).order_by(FarePolicy.version.desc()).limit(1)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def policies(self) -> list[FarePolicy]:
        query = select(FarePolicy).order_by(FarePolicy.version)
        return list((await self.session.execute(query)).scalars())

    async def policy(self, version: int) -> FarePolicy | None:
        return await self.session.get(FarePolicy, version)

    async def region(self, region_id: str) -> Region | None:
        return await self.session.get(Region, region_id)

    async def region_covering(self, lat: float, lng: float) -> Region | None:
        point = ST_SetSRID(ST_MakePoint(lng, lat), 4326)
        query = select(Region).where(ST_Covers(Region.area, point)).limit(1)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def service_areas_geojson(self) -> list[str]:
        query = select(ST_AsGeoJSON(Region.area)).where(Region.area.is_not(None))
        return [str(area) for area in (await self.session.execute(query)).scalars()]

    async def quote(self, quote_id: uuid.UUID) -> Quote | None:
        return await self.session.get(Quote, quote_id)

    async def quotes(self, quote_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Quote]:
        if not quote_ids:
            return {}
        query = select(Quote).where(Quote.id.in_(quote_ids))
        return {quote.id: quote for quote in (await self.session.execute(query)).scalars()}

    async def policies_by_version(self, versions: Collection[int]) -> dict[int, FarePolicy]:
        if not versions:
            return {}
        query = select(FarePolicy).where(FarePolicy.version.in_(versions))
        return {policy.version: policy for policy in (await self.session.execute(query)).scalars()}

    async def region_ids(self) -> list[str]:
        return list((await self.session.execute(select(Region.id).order_by(Region.id))).scalars())

    def add(self, item: Quote | FarePolicy | Region) -> None:
        self.session.add(item)
