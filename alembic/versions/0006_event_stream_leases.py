"""event_stream_leases: the open event streams of every process, counted per user

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_stream_leases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_stream_leases")),
    )
    op.create_index("ix_event_stream_leases_owner", "event_stream_leases", ["owner"], unique=False)
    op.create_index(
        "ix_event_stream_leases_holder", "event_stream_leases", ["holder"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_event_stream_leases_holder", table_name="event_stream_leases")
    op.drop_index("ix_event_stream_leases_owner", table_name="event_stream_leases")
    op.drop_table("event_stream_leases")
