"""The report's picture and figures, kept in the database; an index for the report

The report page of a large event drew its graph with Graphviz and computed
its figures at every first view (seconds at 1000 keys). They are now drawn
when the published certifications change and kept in report_drawing, one
row per event, where every server process finds them. The report's counts
and its graph of signer -> key pairs read one covering index of
certification instead of every row with its armored key.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_drawing",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("published_generation", sa.Integer(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("svg", sa.LargeBinary(), nullable=False),
        sa.Column("drawn_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.create_index(
            "ix_certification_report",
            [
                "event_id",
                "status",
                "owner_decision",
                "expires",
                "issuer_fingerprint",
                "target_fingerprint",
            ],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.drop_index("ix_certification_report")
    op.drop_table("report_drawing")
