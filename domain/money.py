"""Exact money: Decimal amounts in ISO-4217 currencies, never floats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from domain.errors import InvalidInput, quoted

_ZERO_DIGITS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DIGITS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DIGITS = "CLF UYW"
_TWO_DIGITS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
    "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
    "NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD "
    "SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU "
    "UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)

MINOR_UNITS: dict[str, int] = {
    **{code: 0 for code in _ZERO_DIGITS.split()},
    **{code: 2 for code in _TWO_DIGITS.split()},
    **{code: 3 for code in _THREE_DIGITS.split()},
    **{code: 4 for code in _FOUR_DIGITS.split()},
}


MAX_AMOUNT = Decimal(10) ** 15

# Decimal input as the contract writes it: ASCII digits, an optional leading "-" and an
# optional "." with at least one digit on each side ("1." and ".5" are refused). No
# exponent, spaces, "_", "+" or other scripts' digits, which Python's Decimal would take.
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
# Longer text is refused before it is looked at: any amount below MAX_AMOUNT with the
# most minor-unit digits (4) fits in 21 characters; the rest is room for leading zeros.
MAX_DECIMAL_CHARS = 40


def parse_decimal(value: str | Decimal | int | float, *, field: str = "amount") -> Decimal:
    """A decimal number from text in the strict form above (or a JSON number)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"{field}: expected a decimal number as a string such as \"19.99\"")
    text = value if isinstance(value, str) else repr(value)  # a JSON number as written: 2.5
    if len(text) > MAX_DECIMAL_CHARS:
        raise InvalidInput(f"{field}: a decimal number has at most {MAX_DECIMAL_CHARS} characters")
    if not _DECIMAL_TEXT.fullmatch(text):
        raise InvalidInput(
            f"{field}: {quoted(value)} is not a decimal number: expected ASCII digits with an"
            " optional leading '-' and '.' fraction, such as \"19.99\""
        )
    return Decimal(text)


def check_currency(code: str) -> str:
    if code not in MINOR_UNITS:
        raise InvalidInput(f"unknown currency {quoted(code)}: expected an ISO 4217 code such as 'USD'")
    return code


def parse_amount(value: str | Decimal | int | float, currency: str, *, field: str = "amount") -> Decimal:
    """An exact amount with no more fractional digits than the currency has."""
    digits = MINOR_UNITS[check_currency(currency)]
    amount = parse_decimal(value, field=field)
    if not amount.is_finite():
        raise InvalidInput(f"{field}: {quoted(value)} is not a finite decimal number")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > digits:
        raise InvalidInput(f"{field}: {currency} amounts have at most {digits} decimal places")
    if abs(amount) >= MAX_AMOUNT:
        raise InvalidInput(f"{field}: {quoted(value)} is too large")
    return amount + Decimal(0)  # normalizes -0


_QUANTUM: dict[str, Decimal] = {code: Decimal(1).scaleb(-digits) for code, digits in MINOR_UNITS.items()}


def to_minor_units(amount: Decimal, currency: str) -> Decimal:
    """The amount with exactly the currency's minor-unit digits: USD 7.5 -> 7.50, JPY 5.0 -> 5."""
    return amount.quantize(_QUANTUM[currency])


def format_amount(amount: Decimal, currency: str) -> str:
    """Rendered with the currency's minor-unit digits: USD "7.50", JPY "5"."""
    return str(to_minor_units(amount, currency))


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{format_amount(self.amount, self.currency)} {self.currency}"
