"""Intake judges every upload again: when signing started; refusals bind no one else

event.signing_started_at: when the host took the start-signing step (D3); NULL
for events that reached signing before, whose window starts at their day.
certification: the UNIQUE (event_id, signature_sha256) goes (a refused upload
is judged again when it comes back); only accepted rows are unique, by
signature packet and by signer, user ID and context. A second acceptance of
the same signer, user ID and context that the old intake let in is marked
refused ("already accepted") first, so the new index holds.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCEPTED = sa.text("status = 'accepted'")
# SQLite names no constraint of 0001: name them for batch mode to find.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signing_started_at", sa.DateTime(), nullable=True))
    op.execute(
        "UPDATE certification SET status = 'refused', rule = 'already accepted', "
        "reason = 'A second certification by the same signer of the same user ID in the "
        "same context; the first one stands.' "
        "WHERE status = 'accepted' AND EXISTS (SELECT 1 FROM certification AS first "
        "WHERE first.event_id = certification.event_id "
        "AND first.issuer_fingerprint = certification.issuer_fingerprint "
        "AND first.user_id_id = certification.user_id_id "
        "AND first.context = certification.context "
        "AND first.status = 'accepted' AND first.id < certification.id)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(
            "certification_event_id_signature_sha256_key", "certification", type_="unique"
        )
    else:
        with op.batch_alter_table("certification", naming_convention=NAMING) as batch_op:
            batch_op.drop_constraint("uq_certification_event_id", type_="unique")
    op.create_index(
        "uq_certification_accepted_signature",
        "certification",
        ["event_id", "signature_sha256"],
        unique=True,
        sqlite_where=ACCEPTED,
        postgresql_where=ACCEPTED,
    )
    op.create_index(
        "uq_certification_accepted_context",
        "certification",
        ["event_id", "issuer_fingerprint", "user_id_id", "context"],
        unique=True,
        sqlite_where=ACCEPTED,
        postgresql_where=ACCEPTED,
    )


def downgrade() -> None:
    op.drop_index("uq_certification_accepted_context", table_name="certification")
    op.drop_index("uq_certification_accepted_signature", table_name="certification")
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_certification_event_id", ["event_id", "signature_sha256"]
        )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("signing_started_at")
