"""Money as integer base units of the network token (18 decimals, like an ERC-20)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from gpudepin.core.errors import InvalidInput

DECIMALS = 18
UNIT = 10**DECIMALS


def parse_amount(text: str | int | Decimal, *, allow_zero: bool = False) -> int:
    """Turn a display amount ("1.5", 2) into base units; refuse negatives and dust."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise InvalidInput(f"not an amount: {text!r}", hint="Write it like 10 or 0.25.") from exc
    if not value.is_finite():
        raise InvalidInput(f"not an amount: {text!r}", hint="Write it like 10 or 0.25.")
    units = value * UNIT
    if units != units.to_integral_value():
        raise InvalidInput(f"{text} has more than {DECIMALS} decimals")
    result = int(units)
    if result < 0 or (result == 0 and not allow_zero):
        raise InvalidInput(f"amount must be positive, got {text}")
    return result


def format_amount(units: int, places: int = 6) -> str:
    """Base units to a display string, trimmed of trailing zeros."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNIT)
    frac_text = f"{frac:0{DECIMALS}d}"[:places].rstrip("0")
    return f"{sign}{whole}.{frac_text}" if frac_text else f"{sign}{whole}"


def fee_of(amount: int, fee_bps: int) -> int:
    """The protocol's cut of ``amount`` at ``fee_bps`` basis points, rounded down."""
    return amount * fee_bps // 10_000
