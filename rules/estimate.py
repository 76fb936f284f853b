"""How many tokens a group of similar users needs (R12), in exact arithmetic.

tokens = ceil(people x passes_per_person x (1 + buffer) / passes_per_token). Fractions,
never binary floats, so 103 x 4 x 1.2 / 10 is 49.4 and rounds up to 50, not 49.
"""

from decimal import Decimal
from fractions import Fraction

import msgspec


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    people: int
    passes_per_person: str
    buffer_percent: str
    exact: str
    """The unrounded token figure, as an exact decimal (or p/q when it has none)."""
    tokens: int
    """Tokens to buy for login access passes."""
    recommend_user_access: bool
    """More than one token's worth of passes per person: a UAP each is cheaper."""
    user_access_tokens: int
    """Tokens if every person gets a user access pass instead."""


def _exact(value: Decimal | int | str | Fraction) -> Fraction:
    if isinstance(value, int | Fraction):
        return Fraction(value)
    return Fraction(Decimal(value))


def exact_text(value: Fraction) -> str:
    """An exact figure as text: a decimal when it has one (`49.44`), else `p/q`."""
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def estimate_tokens(
    people: int,
    passes_per_person: Decimal | int | str | Fraction,
    buffer_percent: Decimal | int | str | Fraction = 20,
    passes_per_token: int = 10,
) -> Estimate:
    if people < 0:
        raise ValueError("people must not be negative")
    passes = _exact(passes_per_person)
    buffer = _exact(buffer_percent)
    if passes < 0:
        raise ValueError("passes per person must not be negative")
    if buffer < 0:
        raise ValueError("buffer must not be negative")
    exact = people * passes * (1 + buffer / 100) / passes_per_token
    tokens = -(-exact.numerator // exact.denominator)  # ceiling, exactly
    return Estimate(
        people=people,
        passes_per_person=exact_text(passes),
        buffer_percent=exact_text(buffer),
        exact=exact_text(exact),
        tokens=tokens,
        recommend_user_access=passes > passes_per_token,
        user_access_tokens=people,
    )
