"""Read models: projection checkpoints, the orders read tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per projection: the last global position it has applied. The
    # runner rewrites it in the same transaction as the read tables, so an
    # event is applied exactly once in effect. `error` keeps the reason a
    # projection stopped (it never skips an event to carry on).
    op.execute(
        """
        CREATE TABLE projection_checkpoints (
            name        text        PRIMARY KEY,
            position    bigint      NOT NULL DEFAULT 0,
            error       text,
            updated_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("INSERT INTO projection_checkpoints (name) VALUES ('orders')")
    # `seq` is the position of the order's creation: immutable and unique, so
    # keyset pages over it never repeat or skip a row while orders change.
    op.execute(
        """
        CREATE TABLE order_views (
            id                   text        PRIMARY KEY,
            seq                  bigint      NOT NULL UNIQUE,
            customer_id          text        NOT NULL,
            status               text        NOT NULL,
            currency             text        NOT NULL,
            total                numeric     NOT NULL,
            line_count           integer     NOT NULL,
            version              integer     NOT NULL,
            cancellation_reason  text,
            created_at           timestamptz NOT NULL,
            updated_at           timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX order_views_customer_seq ON order_views (customer_id, seq DESC)")
    op.execute(
        "CREATE INDEX order_views_customer_status_seq ON order_views (customer_id, status, seq DESC)"
    )
    op.execute("CREATE INDEX order_views_status_seq ON order_views (status, seq DESC)")
    # A line's `seq` is the position of the event that put the sku on the
    # order: lines list in the order they were added, like the aggregate's.
    op.execute(
        """
        CREATE TABLE order_lines (
            order_id    text     NOT NULL,
            sku         text     NOT NULL,
            seq         bigint   NOT NULL,
            quantity    integer  NOT NULL,
            unit_price  numeric  NOT NULL,
            discount    numeric  NOT NULL,
            PRIMARY KEY (order_id, sku)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE order_lines")
    op.execute("DROP TABLE order_views")
    op.execute("DROP TABLE projection_checkpoints")
