"""document_events: the outbox of document changes that event streams replay

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("doc_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_events")),
    )
    op.create_index("ix_document_events_owner_id", "document_events", ["owner", "id"], unique=False)
    op.create_index(
        "ix_document_events_created_at", "document_events", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_document_events_created_at", table_name="document_events")
    op.drop_index("ix_document_events_owner_id", table_name="document_events")
    op.drop_table("document_events")
