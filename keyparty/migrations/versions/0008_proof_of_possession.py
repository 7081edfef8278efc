"""Proof of possession (O2): challenges, session secrets, proven entries

A session now names a random per-attendee secret (its hash in
attendee.session_secret_sha256) instead of a counter: every session opened
before the upgrade ends, and phones join again (a new link, or re-join
with proof). An attendee who redeemed a join link counts as proven.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 18:50:10.374138
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "challenge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=True),
        sa.Column("link_token_sha256", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["key_id"], ["key.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("link_token_sha256"),
        sa.UniqueConstraint("public_id"),
    )
    with op.batch_alter_table("challenge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_challenge_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_challenge_key_id"), ["key_id"], unique=False)

    with op.batch_alter_table("attendee", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_secret_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("proven_at", sa.DateTime(), nullable=True))
        batch_op.drop_column("session_epoch")

    # A join link redeemed before the upgrade reached its person (O2, item 6).
    op.execute("UPDATE attendee SET proven_at = joined_at WHERE joined_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("attendee", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_epoch", sa.INTEGER(), nullable=False, server_default="0")
        )
        batch_op.drop_column("proven_at")
        batch_op.drop_column("session_secret_sha256")

    with op.batch_alter_table("challenge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_challenge_key_id"))
        batch_op.drop_index(batch_op.f("ix_challenge_event_id"))

    op.drop_table("challenge")
