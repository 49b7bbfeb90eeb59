"""Every ORM model, imported once so metadata (and Alembic) sees all tables."""

from dispatch.accounts.models import Driver, UserAccount
from dispatch.core.database import Base
from dispatch.events.models import Event
from dispatch.fares.models import FarePolicy, Quote, Region
from dispatch.rides.models import Offer, Ride
from governance.models import AuditEntry, Ballot, Member, Proposal, RollEntry

__all__ = [
    "AuditEntry",
    "Ballot",
    "Base",
    "Driver",
    "Event",
    "FarePolicy",
    "Member",
    "Offer",
    "Proposal",
    "Quote",
    "Region",
    "Ride",
    "RollEntry",
    "UserAccount",
]
