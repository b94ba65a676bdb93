"""ISO 4217 minor units, and rounding money half-even to them, exactly, in Python and DuckDB.

An amount is rounded once, at the end, to its currency's minor unit (JPY 0 decimals, USD 2,
KWD 3), half to even: ties go to the even last digit, so rounding errors over many lines
do not drift one way. DuckDB's own ``round()`` on a DECIMAL rounds half away from zero
(``round(0.125, 2)`` = 0.13), so the rule is written out here in SQL on exact decimals and
integers; no value passes through a float.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import duckdb
import pyarrow as pa

# Active ISO 4217 codes and their minor units (the list as maintained by SIX, List One).
# Codes with no minor unit in the standard (precious metals, XDR, XTS, XXX) are left out on
# purpose: no invoice line is priced in them, and a lookup of one should fail loudly.
MINOR_UNITS: dict[str, int] = {
    # Zero decimals.
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0,
    # Three decimals.
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # Four decimals (units of account).
    "CLF": 4, "UYW": 4,
    # Two decimals.
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2,
    "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BMD": 2, "BND": 2, "BOB": 2,
    "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2,
    "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CNY": 2, "COP": 2, "COU": 2, "CRC": 2,
    "CUP": 2, "CVE": 2, "CZK": 2, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2,
    "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2,
    "GMD": 2, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2,
    "ILS": 2, "INR": 2, "IRR": 2, "JMD": 2, "KES": 2, "KGS": 2, "KHR": 2, "KPW": 2,
    "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "MAD": 2,
    "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
    "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2,
    "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2,
    "PKR": 2, "PLN": 2, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2, "SAR": 2, "SBD": 2,
    "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2,
    "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2,
    "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "USD": 2, "USN": 2,
    "UYU": 2, "UZS": 2, "VED": 2, "VES": 2, "WST": 2, "XCD": 2, "XCG": 2, "YER": 2,
    "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

# Amounts carry 12 decimal places (as quantities do): the most a minor unit can round to.
AMOUNT_TYPE = "DECIMAL(38,12)"
MAX_DECIMALS = 12


def minor_units(code: str) -> int:
    """The number of decimals of the currency's minor unit: ``minor_units("JPY") == 0``.

    Codes are matched exactly, upper case as ISO 4217 writes them, so a code that is
    wrong in the plan is reported rather than quietly accepted.
    """
    try:
        return MINOR_UNITS[code]
    except (KeyError, TypeError):
        hint = (
            " (ISO 4217 codes are upper case)"
            if isinstance(code, str) and (code.upper() in MINOR_UNITS)
            else ""
        )
        raise ValueError(f"unknown currency code {code!r}: not an ISO 4217 code{hint}") from None


def round_half_even(amount: Decimal, code: str) -> Decimal:
    """``amount`` rounded half-even to the minor unit of currency ``code`` (Python side)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(code)), rounding=ROUND_HALF_EVEN)


def currency_table() -> pa.Table:
    """Every known currency, to join against in SQL: code, minor_units, and the HUGEINT
    powers of ten ``mc_half_even`` takes for them, pow10 = 10^minor_units and
    pow10_rest = 10^(12 - minor_units)."""
    codes = sorted(MINOR_UNITS)
    decimals = [MINOR_UNITS[c] for c in codes]
    hugeint = pa.decimal128(38, 0)
    return pa.table(
        {
            "code": pa.array(codes, pa.string()),
            "minor_units": pa.array(decimals, pa.int32()),
            "pow10": pa.array([10**d for d in decimals], hugeint),
            "pow10_rest": pa.array([10 ** (MAX_DECIMALS - d) for d in decimals], hugeint),
        }
    )


def _pow10(k: int) -> str:
    return f"CAST({10**k} AS HUGEINT)"


# Powers of ten as HUGEINT, indexed by decimals + 1. DuckDB's power() returns a DOUBLE, and
# a DECIMAL divided by a DECIMAL is a DOUBLE too; a list lookup stays in exact integers.
_POW10 = "[" + ", ".join(_pow10(k) for k in range(MAX_DECIMALS + 1)) + "]"
ONE_E_MINUS_12 = "CAST(0.000000000001 AS DECIMAL(13,12))"

# mc_half_even(x, p, q, d0): x (any DECIMAL of scale ≤ 24: a DECIMAL(38,12) amount or a
# DECIMAL(38,24) product) rounded half to even at d decimals, as DECIMAL(38,12), where
# p = 10^d and q = 10^(12-d) are HUGEINTs and d0 says d = 0. Written flat, without nested
# macros, because DuckDB binds every copy of a macro argument: this stays cheap to plan.
# x splits into its integer part trunc(x) and fraction f = x - trunc(x), |f| < 1. g = f × p
# stays below 10^12 in magnitude, so it fits whatever scale DuckDB gives it; trunc(g) are
# the kept decimals and g - trunc(g) the dropped part. The kept digits move one away from
# zero when the dropped part is above a half, or exactly a half and the last kept digit is
# odd. That digit is trunc(g)'s last one, except at d = 0, where no decimal is kept and it
# is the integer part's (3.5 → 4, 2.5 → 2). The kept decimals times q are x's rounded
# fraction in units of 10^-12, an exact DECIMAL(38,12) once multiplied by 10^-12.
# Truncation (not floor) everywhere makes the rule symmetric for negative amounts.
ROUND_HALF_EVEN_SQL = f"""
CREATE OR REPLACE TEMP MACRO mc_half_even(x, p, q, d0) AS CAST(
    CAST(trunc(x) AS {AMOUNT_TYPE})
    + CAST(
        CAST(
            (CAST(trunc((x - trunc(x)) * p) AS HUGEINT)
             + CASE
                 WHEN abs((x - trunc(x)) * p - trunc((x - trunc(x)) * p)) > 0.5
                   OR (abs((x - trunc(x)) * p - trunc((x - trunc(x)) * p)) = 0.5
                       AND (CAST(trunc((x - trunc(x)) * p) AS HUGEINT)
                            + CASE WHEN d0 THEN CAST(trunc(x) AS HUGEINT)
                                   ELSE CAST(0 AS HUGEINT) END) % 2 <> 0)
                     THEN CAST(sign(x) AS HUGEINT)
                 ELSE CAST(0 AS HUGEINT)
               END) * q
        AS DECIMAL(38,0)) * {ONE_E_MINUS_12}
    AS {AMOUNT_TYPE})
AS {AMOUNT_TYPE});
CREATE OR REPLACE TEMP MACRO mc_round_half_even(x, d) AS
    mc_half_even(x, ({_POW10})[d + 1], ({_POW10})[{MAX_DECIMALS + 1} - d], d = 0);
"""


def install_rounding(con: duckdb.DuckDBPyConnection) -> None:
    """Create the temporary macros ``mc_round_half_even(x, decimals)`` and ``mc_half_even``."""
    con.execute(ROUND_HALF_EVEN_SQL)
