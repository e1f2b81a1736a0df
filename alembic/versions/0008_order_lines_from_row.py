"""An order's lines live only on its row (`order_views.lines`); the row leaves room to be
updated in place.

Revision ID: 0008_order_lines_from_row
Revises: 0007_order_lines_json
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008_order_lines_from_row"
down_revision = "0007_order_lines_json"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Since 0007 nothing but the projection's own load read `order_lines`, and keeping it
    # beside the JSON cost a DELETE and an INSERT per batch: about a third of the
    # database's work for each addItem (issue 18). A process of the previous version still
    # writing it fails its batch and stops at its checkpoint until it is upgraded; it
    # never skips an event.
    op.execute("DROP TABLE order_lines")
    # An addItem changes no indexed column of its order's row: with room left on the page,
    # PostgreSQL updates the row in place (a HOT update) and leaves the indexes alone. Pages
    # written from now on keep 30 % free; a rebuild carries the setting over.
    op.execute("ALTER TABLE order_views SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE order_views RESET (fillfactor)")
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
    op.execute(
        """
        INSERT INTO order_lines (order_id, sku, seq, quantity, unit_price, discount)
        SELECT o.id, l.key, (l.value->>0)::bigint, (l.value->>1)::int,
               (l.value->>2)::numeric, (l.value->>3)::numeric
        FROM order_views o, jsonb_each(o.lines) l
        """
    )
