"""processed_messages by age: the relay's retention step deletes old records by range.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX processed_messages_by_age ON processed_messages (processed_at)")


def downgrade() -> None:
    op.execute("DROP INDEX processed_messages_by_age")
