"""The party list for everyone: a public list switch, and who was mailed it

event.publish_list: the host offers the frozen list on the public event page.
attendee.list_mailed_at: when `keyparty mail-list` mailed this attendee the list.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event") as table:
        table.add_column(
            sa.Column("publish_list", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("attendee") as table:
        table.add_column(sa.Column("list_mailed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attendee") as table:
        table.drop_column("list_mailed_at")
    with op.batch_alter_table("event") as table:
        table.drop_column("publish_list")
