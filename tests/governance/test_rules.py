from fractions import Fraction

import pytest

from governance.rules import Tally, decide, parse_fraction

HALF, TWO_THIRDS = Fraction(1, 2), Fraction(2, 3)


@pytest.mark.parametrize(
    ("yes", "no", "abstain", "roll", "threshold", "expected"),
    [
        (2, 0, 0, 4, HALF, "passed"),  # exactly at quorum
        (1, 0, 0, 4, HALF, "failed_quorum"),  # one short of quorum
        (0, 0, 2, 4, HALF, "rejected"),  # all abstain: quorum met, nobody for
        (1, 1, 0, 4, HALF, "rejected"),  # a tie never passes
        (2, 1, 1, 4, HALF, "passed"),
        (2, 1, 0, 4, TWO_THIRDS, "passed"),  # exactly two thirds
        (3, 2, 0, 5, TWO_THIRDS, "rejected"),  # 60% < two thirds
        (0, 0, 0, 0, HALF, "failed_quorum"),  # an empty roll cannot decide
    ],
)
def test_decide(
    yes: int, no: int, abstain: int, roll: int, threshold: Fraction, expected: str
) -> None:
    assert decide(Tally(yes, no, abstain, roll), HALF, threshold) == expected


def test_fractions_are_exact() -> None:
    assert parse_fraction("2/3") == Fraction(2, 3)
    assert parse_fraction("0.5") == HALF
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_fraction("3/2")
