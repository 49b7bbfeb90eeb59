"""Text people show to each other (names, vehicles) and emails, normalised or refused.

NFKC folds compatibility forms (fullwidth `Ｊ`, `ℝ`) into the letters they stand for; what
cannot be made plain is refused rather than stored: control characters (terminal escapes reach a
driver's screen), bidirectional overrides (`\u202e` turns a name around) and blank names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Annotated

from confusable_homoglyphs import confusables
from pydantic import ValidatorFunctionWrapHandler, WrapValidator

# Bidirectional embeddings, overrides, isolates and marks (Unicode's Bidi_Control), which make
# text display in another order than it reads.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Controls, line and paragraph separators, surrogates, private use, unassigned code points.
REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs", "Co", "Cn"})


def display_text(value: str, *, multiline: bool = False) -> str:
    """NFKC with the edges trimmed; ValueError (a 422 in a schema) for what cannot be shown.
    `multiline` text (a cancel reason) may keep its line breaks."""
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise ValueError("must not be blank")
    for char in text:
        if multiline and char == "\n":
            continue
        if char in BIDI_CONTROLS:
            raise ValueError(f"must not contain the bidirectional control U+{ord(char):04X}")
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            raise ValueError(f"must not contain the control or unassigned U+{ord(char):04X}")
    return text


def canonical_email(value: str) -> str:
    """The one form an email is registered and looked up in (registration and login alike)."""
    return unicodedata.normalize("NFKC", value).strip().lower()


def lookalike_problem(email: str) -> str | None:
    """Why an (already canonical) email could pass for another one, or None.

    Refused: a non-ASCII character that is a homoglyph of an ASCII one (`ı` for `i`, Cyrillic
    `о` for `o`), and parts that mix scripts with confusable letters (Unicode's confusables
    data). Letters that look like no ASCII letter (`é`, `ü`, `ß`, `李`) stay allowed.
    """
    for char in dict.fromkeys(email):
        if char.isascii():
            continue
        found = confusables.is_confusable(char, greedy=True) or []
        if any(h["c"].isascii() for entry in found for h in entry["homoglyphs"]):
            return f"{char!r} (U+{ord(char):04X}) looks like an ASCII letter"
    for part in email.split("@"):
        if confusables.is_dangerous(part):
            return f"{part!r} mixes scripts with look-alike letters"
    return None


def multiline_text(value: str) -> str:
    return display_text(value, multiline=True)


def held_to_limits(normalise: Callable[[str], str]) -> WrapValidator:
    """The field's length limits hold twice: for the text as sent (what the schema promises and
    a client counts) and for the text normalised (what is stored: NFKC makes U+FDFA 18
    characters, and a limit checked on the sent text alone let the database refuse the row, a
    500)."""

    def validate(value: object, handler: ValidatorFunctionWrapHandler) -> str:
        sent: str = handler(value)
        stored: str = handler(normalise(sent))
        return stored

    return WrapValidator(validate)


DisplayText = Annotated[str, held_to_limits(display_text)]
MultilineText = Annotated[str, held_to_limits(multiline_text)]
