"""Period locks: a closed month, who closed it, when, in which run, on which reference data;
and requests to reprocess a locked month, booked as adjustments in an open period.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "period_lock",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("locked_by", sa.String(128), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("reference_digest", sa.String(64), nullable=False),
        sa.Column("snapshot_path", sa.String(1024), nullable=False),
    )


    op.create_table(
        "reprocess_request",
        sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(7), nullable=False, index=True),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=False),
        sa.Column("booked_in", sa.String(7)),
    )


def downgrade() -> None:
    op.drop_table("reprocess_request")
    op.drop_table("period_lock")
