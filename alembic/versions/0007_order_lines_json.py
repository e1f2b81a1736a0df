"""An order's lines kept on its row as well, so a page of orders is one index scan.

Revision ID: 0007_order_lines_json
Revises: 0006_snapshots
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007_order_lines_json"
down_revision = "0006_snapshots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # {sku: [seq, quantity, "unit_price", "discount"]}, amounts as numeric's exact text.
    # Keyed by sku so that the projection replaces or removes a line by its key in the
    # row's upsert; readers order the lines by seq. `order_lines` stays the projection's
    # per-line table.
    op.execute("ALTER TABLE order_views ADD COLUMN lines jsonb NOT NULL DEFAULT '{}'")
    op.execute(
        """
        UPDATE order_views o SET lines = l.lines
        FROM (
            SELECT order_id,
                   jsonb_object_agg(sku, jsonb_build_array(seq, quantity, unit_price::text, discount::text)) AS lines
            FROM order_lines GROUP BY order_id
        ) l
        WHERE l.order_id = o.id
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE order_views DROP COLUMN lines")
