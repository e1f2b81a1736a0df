"""How far the relay published, one row per batch, instead of a mark on every outbox row.

Revision ID: 0010_outbox_published_marks
Revises: 0009_order_lines_lz4
Create Date: 2026-12-05
"""

from alembic import op

revision = "0010_outbox_published_marks"
down_revision = "0009_order_lines_lz4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The relay publishes in position order, so what it published is a prefix of the outbox:
    # a row per batch (the last position it published, and when) says as much as a mark on
    # every row, which cost the database an update of each row (about 6 µs per event under
    # addItem load, with its index entry and, later, its vacuum) and every append an entry
    # in the index of unpublished rows (issue 18).
    op.execute(
        """
        CREATE TABLE outbox_published (
            through      bigint      PRIMARY KEY,
            published_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX outbox_published_at ON outbox_published (published_at)")
    # Each batch marked its rows in one transaction, so one now(): a batch per distinct time,
    # up to the first row left unpublished (none below it should be; if one were, it and
    # everything after it is published again: at least once).
    op.execute(
        """
        INSERT INTO outbox_published (through, published_at)
        SELECT max(position), published_at FROM outbox
        WHERE published_at IS NOT NULL
          AND position < coalesce((SELECT min(position) FROM outbox WHERE published_at IS NULL), 9223372036854775807)
        GROUP BY published_at
        """
    )
    op.execute("DROP INDEX outbox_unpublished")
    op.execute("ALTER TABLE outbox DROP COLUMN published_at")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN published_at timestamptz")
    op.execute(
        """
        UPDATE outbox o SET published_at = (
            SELECT p.published_at FROM outbox_published p WHERE p.through >= o.position
            ORDER BY p.through LIMIT 1
        )
        WHERE o.position <= (SELECT max(through) FROM outbox_published)
        """
    )
    op.execute("CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL")
    op.execute("DROP TABLE outbox_published")
