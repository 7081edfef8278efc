"""Baseline: the schema of the first release (keyparty_schema version 1)

The tables exactly as keyparty made them before it had migrations (main at
6ca4fd5). keyparty.migrations stamps a database of that release at this
revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-11-29 18:29:44.216481
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("date", sa.Date(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("frozen_at", sa.DateTime(), nullable=True),
        sa.Column("partylist", sa.Text(), nullable=True),
        sa.Column("partylist_sha256", sa.String(length=64), nullable=True),
        sa.Column("partylist_sha512", sa.String(length=128), nullable=True),
        sa.Column("contexts", sa.String(length=200), nullable=False),
        sa.Column("pace_min_gap_seconds", sa.Integer(), nullable=False),
        sa.Column("pace_window_seconds", sa.Integer(), nullable=False),
        sa.Column("pace_max_in_window", sa.Integer(), nullable=False),
        sa.Column("cert_expiry_days", sa.Integer(), nullable=False),
        sa.Column("cert_expiry_cap_days", sa.Integer(), nullable=False),
        sa.Column("signing_window_days", sa.Integer(), nullable=False),
        sa.Column("notation_domain", sa.String(length=100), nullable=False),
        sa.Column("policy_url", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table("keyparty_schema", sa.Column("version", sa.Integer(), nullable=False))
    op.execute("INSERT INTO keyparty_schema (version) VALUES (1)")
    op.create_table(
        "attendee",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("join_token_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=True),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("signing_token_sha256", sa.String(length=64), nullable=True),
        sa.Column("entry_confirmed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("join_token_sha256"),
        sa.UniqueConstraint("signing_token_sha256"),
    )
    with op.batch_alter_table("attendee", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attendee_event_id"), ["event_id"], unique=False)

    op.create_table(
        "refusal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("refusal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refusal_event_id"), ["event_id"], unique=False)

    op.create_table(
        "key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("attendee_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("algorithm", sa.String(length=40), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=True),
        sa.Column("armored", sa.Text(), nullable=False),
        sa.Column("list_number", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["attendee_id"], ["attendee.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "fingerprint"),
    )
    with op.batch_alter_table("key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_event_id"), ["event_id"], unique=False)

    op.create_table(
        "user_id",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("uid_hash", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["key.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user_id", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_id_key_id"), ["key_id"], unique=False)

    op.create_table(
        "verification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("signer_id", sa.Integer(), nullable=False),
        sa.Column("user_id_id", sa.Integer(), nullable=False),
        sa.Column("context", sa.String(length=40), nullable=False),
        sa.Column("basis", sa.String(length=40), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signer_id"], ["attendee.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id_id"], ["user_id.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("verification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verification_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_verification_signer_id"), ["signer_id"], unique=False)

    op.create_table(
        "certification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("signer_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("user_id_id", sa.Integer(), nullable=True),
        sa.Column("verification_id", sa.Integer(), nullable=True),
        sa.Column("issuer_fingerprint", sa.String(length=40), nullable=True),
        sa.Column("target_fingerprint", sa.String(length=40), nullable=True),
        sa.Column("user_id_text", sa.Text(), nullable=True),
        sa.Column("context", sa.String(length=40), nullable=True),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=True),
        sa.Column("expires", sa.DateTime(), nullable=True),
        sa.Column("signature_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("rule", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("refusal_text", sa.Text(), nullable=True),
        sa.Column("refusal_params", sa.JSON(), nullable=True),
        sa.Column("armored", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("owner_decision", sa.String(length=20), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("delivery_token_sha256", sa.String(length=64), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["key_id"], ["key.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signer_id"], ["attendee.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id_id"], ["user_id.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["verification_id"],
            ["verification.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery_token_sha256"),
        sa.UniqueConstraint("event_id", "signature_sha256"),
    )
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certification_event_id"), ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certification_event_id"))

    op.drop_table("certification")
    with op.batch_alter_table("verification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verification_signer_id"))
        batch_op.drop_index(batch_op.f("ix_verification_event_id"))

    op.drop_table("verification")
    with op.batch_alter_table("user_id", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_id_key_id"))

    op.drop_table("user_id")
    with op.batch_alter_table("key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_event_id"))

    op.drop_table("key")
    with op.batch_alter_table("refusal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refusal_event_id"))

    op.drop_table("refusal")
    with op.batch_alter_table("attendee", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attendee_event_id"))

    op.drop_table("attendee")
    op.drop_table("keyparty_schema")
    op.drop_table("event")
