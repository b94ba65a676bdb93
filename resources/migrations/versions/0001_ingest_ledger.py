"""Ingest ledger: landing batches, their files and the state of each landing day.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_batch",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("received_date", sa.Date, nullable=False, index=True),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("raw_lines", sa.BigInteger, nullable=False),
        sa.Column("accepted", sa.BigInteger, nullable=False),
        sa.Column("duplicates", sa.BigInteger, nullable=False),
        sa.Column("quarantined", sa.BigInteger, nullable=False),
        sa.Column("reference_digest", sa.String(64), nullable=False),
        sa.Column("lateness_days", sa.Integer, nullable=False),
        sa.Column("first_run_id", sa.String(64)),
        sa.Column("last_run_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ingest_file",
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("ingest_batch.batch_id"),
                  primary_key=True),
        sa.Column("file", sa.String(512), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("raw_lines", sa.BigInteger, nullable=False),
        sa.Column("accepted", sa.BigInteger, nullable=False),
        sa.Column("duplicates", sa.BigInteger, nullable=False),
        sa.Column("quarantined", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ingest_day",
        sa.Column("received_date", sa.Date, primary_key=True),
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("ingest_batch.batch_id"),
                  nullable=False),
        sa.Column("accepted_keys_digest", sa.String(64), nullable=False),
        sa.Column("window_digest", sa.String(64), nullable=False),
        sa.Column("reference_digest", sa.String(64), nullable=False),
        sa.Column("landing_signature", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ingest_day")
    op.drop_table("ingest_file")
    op.drop_table("ingest_batch")
