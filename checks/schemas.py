"""Pandera (polars) schemas of the warehouse tables: column types, keys and domains."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from rating.ingest import REASONS
from rating.meters import Aggregation

QUANTITY = pl.Decimal(38, 12)
UTC_TIME = pl.Datetime("us", "UTC")


class UsageEvents(pa.DataFrameModel):
    """One accepted event × meter it feeds."""

    event_id: str = pa.Field(str_length={"min_value": 1})
    source: str = pa.Field(str_length={"min_value": 1})
    event_key: pl.UInt64
    event_key_hi: pl.UInt64
    customer_id: str
    event_type: str
    meter: str
    event_time: UTC_TIME  # type: ignore[valid-type]
    usage_date: pl.Date
    received_date: pl.Date
    quantity: QUANTITY = pa.Field(nullable=True, ge=0)  # type: ignore[valid-type]
    unique_value: str = pa.Field(nullable=True)
    dims: str
    data: str
    file: str
    line_no: pl.Int64 = pa.Field(ge=1)
    ingest_batch_id: str = pa.Field(str_startswith="ib-")

    class Config:
        strict = True
        unique = ["source", "event_id", "meter"]  # noqa: RUF012

    @pa.dataframe_check
    @classmethod
    def one_measure_per_row(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Either a quantity or a distinct value (UNIQUE_COUNT), never both or neither."""
        return data.lazyframe.select(
            pl.col("quantity").is_null() ^ pl.col("unique_value").is_null()
        )


class QuarantinedEvents(pa.DataFrameModel):
    """One rejected landing line, with the reason a controller can act on."""

    received_date: pl.Date
    file: str
    line_no: pl.Int64 = pa.Field(ge=1)
    reason: str = pa.Field(isin=list(REASONS))
    detail: str
    raw: str
    raw_hex: str = pa.Field(nullable=True)
    source: str = pa.Field(nullable=True)
    event_id: str = pa.Field(nullable=True)
    event_type: str = pa.Field(nullable=True)
    customer_id: str = pa.Field(nullable=True)
    event_time: UTC_TIME = pa.Field(nullable=True)  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ["file", "line_no"]  # noqa: RUF012


class DuplicateEvents(pa.DataFrameModel):
    """One re-sent copy of an event already accepted, and where the original landed."""

    received_date: pl.Date
    file: str
    line_no: pl.Int64 = pa.Field(ge=1)
    source: str
    event_id: str
    first_received_date: pl.Date
    first_file: str
    first_line_no: pl.Int64 = pa.Field(ge=1)

    class Config:
        strict = True
        unique = ["file", "line_no"]  # noqa: RUF012

    @pa.dataframe_check
    @classmethod
    def original_arrived_first(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """The original's (day, file, line) sorts before the copy's."""
        return data.lazyframe.select(
            (pl.col("first_received_date") < pl.col("received_date"))
            | (
                (pl.col("first_received_date") == pl.col("received_date"))
                & (
                    (pl.col("first_file") < pl.col("file"))
                    | (
                        (pl.col("first_file") == pl.col("file"))
                        & (pl.col("first_line_no") < pl.col("line_no"))
                    )
                )
            )
        )


class DailyUsage(pa.DataFrameModel):
    """Usage per landing day × usage day × customer × meter × group, mergeable exactly."""

    received_date: pl.Date
    usage_date: pl.Date
    customer_id: str
    meter: str
    dims: str
    aggregation: str = pa.Field(isin=[a.value for a in Aggregation])
    quantity: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    event_count: pl.Int64 = pa.Field(ge=1)
    distinct_values: pl.List(pl.String) = pa.Field(nullable=True)  # type: ignore[valid-type]
    latest_event_time: UTC_TIME = pa.Field(nullable=True)  # type: ignore[valid-type]
    latest_source: str = pa.Field(nullable=True)
    latest_event_id: str = pa.Field(nullable=True)
    first_event_time: UTC_TIME  # type: ignore[valid-type]
    last_event_time: UTC_TIME  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ["received_date", "usage_date", "customer_id", "meter", "dims"]  # noqa: RUF012


_BREAKDOWN_ROW = pl.Struct(
    {
        "tier_no": pl.Int32,
        "units": QUANTITY,
        "unit_amount": QUANTITY,
        "flat_amount": QUANTITY,
        "amount": QUANTITY,
    }
)


class BillableUsage(pa.DataFrameModel):
    """Rated usage per month, contract, service segment, charge and price group."""

    period: str = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    contract_id: str
    customer_id: str
    segment_start: pl.Date
    segment_end: pl.Date
    segment_days: pl.Int64 = pa.Field(ge=1, le=31)
    plan_id: str
    charge_id: str
    product_id: str
    meter: str
    model: str
    price_group: str
    kind: str = pa.Field(isin=["usage", "minimum_true_up"])
    currency: str = pa.Field(str_length={"min_value": 3, "max_value": 3})
    quantity: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    included: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    billable_quantity: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    event_count: pl.Int64 = pa.Field(ge=0)
    amount_precise: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    amount: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    breakdown: pl.List(_BREAKDOWN_ROW) = pa.Field(nullable=True)  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ["contract_id", "segment_start", "charge_id", "kind", "price_group"]  # noqa: RUF012

    @pa.dataframe_check
    @classmethod
    def segment_within_period(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Each segment lies inside its month, and its days are counted right."""
        return data.lazyframe.select(
            (pl.col("segment_start").dt.strftime("%Y-%m") == pl.col("period"))
            & (pl.col("segment_end").dt.strftime("%Y-%m") == pl.col("period"))
            & (
                (pl.col("segment_end") - pl.col("segment_start")).dt.total_days() + 1
                == pl.col("segment_days")
            )
        )


INVOICE_KINDS = [
    "prepaid_purchase",
    "usage",
    "minimum_true_up",
    "commitment_true_up",
    "recurring",
    "recurring_adjustment",
    "prior_period_adjustment",
    "credit",
    "prepaid_drawdown",
]


class InvoiceLines(pa.DataFrameModel):
    """One invoice (or credit memo) line."""

    period: str = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    invoice_date: pl.Date
    document_type: str = pa.Field(isin=["invoice", "credit_memo"])
    invoice_id: str = pa.Field(str_matches=r"^(INV-.+-\d{8}-[URP]|CM-.+)$")
    line_id: str
    entity_id: str
    customer_id: str
    contract_id: str
    plan_id: str
    charge_id: str = pa.Field(nullable=True)
    product_id: str = pa.Field(nullable=True)
    kind: str = pa.Field(isin=INVOICE_KINDS)
    service_start: pl.Date
    service_end: pl.Date
    quantity: QUANTITY  # type: ignore[valid-type]
    currency: str = pa.Field(str_length={"min_value": 3, "max_value": 3})
    amount_precise: QUANTITY  # type: ignore[valid-type]
    amount: QUANTITY  # type: ignore[valid-type]
    prepaid_applied: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    source_ref: str
    description: str
    service_period: str = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    adjusts_line_id: str = pa.Field(nullable=True)

    class Config:
        strict = True
        unique = ["line_id"]  # noqa: RUF012

    @pa.dataframe_check
    @classmethod
    def line_id_within_invoice(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A line's id starts with its invoice's id: ids are stable external keys."""
        return data.lazyframe.select(
            pl.col("line_id").str.starts_with(pl.col("invoice_id") + "-")
            & (pl.col("service_start") <= pl.col("service_end"))
        )

    @pa.dataframe_check
    @classmethod
    def signs_by_kind(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Charges are not negative, credits and drawdowns not positive; only recurring
        adjustments (a downgrade, a cancellation) may go either way; only lines that
        carry revenue (a product) are paid from a prepaid balance."""
        kind = pl.col("kind")
        return data.lazyframe.select(
            pl.when(kind.is_in(["credit", "prepaid_drawdown"]))
            .then(pl.col("amount") <= 0)
            .when(kind.is_in(["recurring_adjustment", "prior_period_adjustment"]))
            .then(pl.lit(True))
            .otherwise(pl.col("amount") >= 0)
            & ((pl.col("prepaid_applied") == 0) | pl.col("product_id").is_not_null())
            & (pl.col("prepaid_applied") <= pl.col("amount").abs())
        )


class PrepaidBalances(pa.DataFrameModel):
    """A contract's prepaid credit balance over a month: opening − drawn − expired = closing."""

    period: str = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    contract_id: str
    customer_id: str
    entity_id: str
    currency: str
    expires_on: pl.Date = pa.Field(nullable=True)
    opening: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    drawn: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    expired: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    closing: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ["contract_id"]  # noqa: RUF012

    @pa.dataframe_check
    @classmethod
    def rolls_forward(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("opening") - pl.col("drawn") - pl.col("expired") == pl.col("closing")
        )


class RevenueSchedule(pa.DataFrameModel):
    """What an obligation earns in a month, and what is still deferred at its end."""

    period: str = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    entity_id: str
    customer_id: str
    contract_id: str
    invoice_id: str = pa.Field(nullable=True)
    line_id: str
    invoice_period: str
    invoice_date: pl.Date = pa.Field(nullable=True)
    kind: str = pa.Field(isin=[*INVOICE_KINDS, "prepaid_breakage"])
    pattern: str = pa.Field(isin=["ratable", "point"])
    product_id: str = pa.Field(nullable=True)
    currency: str
    service_start: pl.Date
    service_end: pl.Date
    amount: QUANTITY  # type: ignore[valid-type]
    recognized_before: QUANTITY  # type: ignore[valid-type]
    recognized: QUANTITY  # type: ignore[valid-type]
    recognized_to_date: QUANTITY  # type: ignore[valid-type]
    deferred_balance: QUANTITY  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ["line_id"]  # noqa: RUF012

    @pa.dataframe_check
    @classmethod
    def never_beyond_the_line(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Recognised to date plus deferred is the line; nothing is recognised past it, and
        a line whose service has ended is fully recognised."""
        return data.lazyframe.select(
            (pl.col("recognized_before") + pl.col("recognized") == pl.col("recognized_to_date"))
            & (pl.col("recognized_to_date") + pl.col("deferred_balance") == pl.col("amount"))
            & (pl.col("recognized_to_date").abs() <= pl.col("amount").abs())
            & (
                (pl.col("service_end").dt.strftime("%Y-%m") > pl.col("period"))
                | (pl.col("deferred_balance") == 0)
            )
        )


class JournalLines(pa.DataFrameModel):
    """One journal line: entity × accounting period × currency × category."""

    accounting_date: pl.Date
    period: str = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    entity_id: str
    erp_subsidiary: str
    journal_id: str = pa.Field(str_startswith="JE-")
    category: str = pa.Field(
        isin=[
            "billing",
            "usage_accrual",
            "accrual_reversal",
            "revenue_release",
            "prepaid_breakage",
        ]
    )
    line_no: pl.Int64 = pa.Field(ge=1)
    account: str = pa.Field(nullable=True)
    account_role: str
    debit: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    credit: QUANTITY = pa.Field(ge=0)  # type: ignore[valid-type]
    currency: str
    functional_currency: str
    fx_rate: QUANTITY = pa.Field(nullable=True, gt=0)  # type: ignore[valid-type]
    fx_rate_date: pl.Date = pa.Field(nullable=True)
    # The quote the rate rests on (the older leg's, for a cross rate): the day asked for,
    # or up to METERCLOSE_FX_FALLBACK_MAX_AGE_DAYS earlier.
    fx_quote_date: pl.Date = pa.Field(nullable=True)
    functional_debit: QUANTITY = pa.Field(nullable=True, ge=0)  # type: ignore[valid-type]
    functional_credit: QUANTITY = pa.Field(nullable=True, ge=0)  # type: ignore[valid-type]
    product_id: str = pa.Field(nullable=True)
    product_family: str = pa.Field(nullable=True)
    business_unit: str = pa.Field(nullable=True)
    department: str = pa.Field(nullable=True)
    customer_id: str = pa.Field(nullable=True)
    contract_id: str = pa.Field(nullable=True)
    invoice_id: str = pa.Field(nullable=True)
    line_id: str = pa.Field(nullable=True)
    service_period: str
    memo: str
    source_ref: str
    correlation_id: str

    class Config:
        strict = True
        unique = ["journal_id", "line_no"]  # noqa: RUF012

    @pa.dataframe_check
    @classmethod
    def one_side_per_line(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            ((pl.col("debit") == 0) | (pl.col("credit") == 0))
            & (
                pl.col("functional_debit").is_null()
                | (pl.col("functional_debit") == 0)
                | (pl.col("functional_credit") == 0)
            )
        )


class Exceptions(pa.DataFrameModel):
    """One business exception a controller must act on."""

    exception_id: str = pa.Field(str_startswith="EX-")
    period: str = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    kind: str
    severity: str = pa.Field(isin=["high", "medium", "low", "info"])
    entity_id: str = pa.Field(nullable=True)
    contract_id: str = pa.Field(nullable=True)
    customer_id: str = pa.Field(nullable=True)
    reason: str
    action: str
    count: pl.Int64 = pa.Field(ge=1)
    amount: QUANTITY = pa.Field(nullable=True)  # type: ignore[valid-type]
    currency: str = pa.Field(nullable=True)
    status: str = pa.Field(isin=["open", "resolved"])

    class Config:
        strict = True
        unique = ["exception_id"]  # noqa: RUF012
