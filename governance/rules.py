"""Bylaw arithmetic, exact: fractions, never floats."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction


def parse_fraction(value: str) -> Fraction:
    """ "2/3", "1/2" or "0.5" as an exact fraction between 0 and 1."""
    fraction = Fraction(value.strip())
    if not 0 <= fraction <= 1:
        raise ValueError(f"{value!r} is not a share between 0 and 1")
    return fraction


@dataclass(frozen=True)
class Tally:
    yes: int
    no: int
    abstain: int
    roll_size: int

    @classmethod
    def of(cls, choices: Iterable[str], roll_size: int) -> Tally:
        counted = list(choices)
        return cls(counted.count("yes"), counted.count("no"), counted.count("abstain"), roll_size)

    @property
    def turnout(self) -> int:
        return self.yes + self.no + self.abstain

    def as_dict(self) -> dict[str, int]:
        return {
            "yes": self.yes,
            "no": self.no,
            "abstain": self.abstain,
            "turnout": self.turnout,
            "roll_size": self.roll_size,
        }


def decide(tally: Tally, quorum: Fraction, threshold: Fraction) -> str:
    """Quorum counts every ballot, abstentions too; then the yes share of yes + no must reach
    the threshold, and a tie never passes (so "1/2" means a simple majority)."""
    if tally.roll_size == 0 or tally.turnout < quorum * tally.roll_size:
        return "failed_quorum"
    decided = tally.yes + tally.no
    if decided == 0 or tally.yes <= tally.no or tally.yes < threshold * decided:
        return "rejected"
    return "passed"
