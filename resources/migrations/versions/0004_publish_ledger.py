"""The publish ledger: one row per ERP document, its payload digest, state and ERP id.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erp_publication",
        sa.Column("target", sa.String(128), primary_key=True),
        sa.Column("external_id", sa.String(160), primary_key=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("journal_id", sa.String(128), nullable=False),
        sa.Column("accounting_date", sa.Date, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("functional_debit", sa.String(48), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("erp_document_id", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_erp_publication_period", "erp_publication", ["target", "period", "state"])


def downgrade() -> None:
    op.drop_index("ix_erp_publication_period", "erp_publication")
    op.drop_table("erp_publication")
