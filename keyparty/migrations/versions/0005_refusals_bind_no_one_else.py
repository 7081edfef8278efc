"""Refusals bind no one else; the signing window starts with signing

event.signing_started_at: when the host took the `start-signing` step (D3).
certification: the unique (event_id, signature_sha256) constraint becomes two
partial unique indexes over accepted rows only, so a refused upload is judged
again when it comes back.

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
# The baseline's constraint had no name: SQLite reflects it under this
# convention; PostgreSQL named it itself.
CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
SQLITE_NAME = "uq_certification_event_id_signature_sha256"
POSTGRESQL_NAME = "certification_event_id_signature_sha256_key"


def upgrade() -> None:
    with op.batch_alter_table("event") as table:
        table.add_column(sa.Column("signing_started_at", sa.DateTime(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "certification", naming_convention=CONVENTION, recreate="always"
        ) as table:
            table.drop_constraint(SQLITE_NAME, type_="unique")
    else:
        op.drop_constraint(POSTGRESQL_NAME, "certification", type_="unique")
    for name, columns in (
        ("uq_certification_accepted_signature", ["event_id", "signature_sha256"]),
        (
            "uq_certification_accepted_context",
            ["event_id", "issuer_fingerprint", "user_id_id", "context"],
        ),
    ):
        op.create_index(
            name,
            "certification",
            columns,
            unique=True,
            sqlite_where=ACCEPTED,
            postgresql_where=ACCEPTED,
        )


def downgrade() -> None:
    op.drop_index("uq_certification_accepted_context", "certification")
    op.drop_index("uq_certification_accepted_signature", "certification")
    with op.batch_alter_table("certification") as table:
        table.create_unique_constraint(SQLITE_NAME, ["event_id", "signature_sha256"])
    with op.batch_alter_table("event") as table:
        table.drop_column("signing_started_at")
