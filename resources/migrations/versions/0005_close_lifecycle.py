"""The close lifecycle: controllers' confirmations of landing days, and every transition of
a month (prepared, approved, published, locked, reprocess requested) with who, when and
from which run.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "landing_confirmation",
        sa.Column("received_date", sa.Date, primary_key=True),
        sa.Column("confirmed_by", sa.String(128), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=False),
        sa.Column("status_confirmed", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64)),
    )
    op.create_table(
        "period_transition",
        sa.Column("transition_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("transition", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("digest", sa.String(64)),
        sa.Column("detail", sa.String(1024)),
    )
    op.create_index("ix_period_transition_period", "period_transition", ["period", "transition"])


def downgrade() -> None:
    op.drop_index("ix_period_transition_period", "period_transition")
    op.drop_table("period_transition")
    op.drop_table("landing_confirmation")
