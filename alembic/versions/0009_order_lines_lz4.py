"""An order's lines are compressed with lz4 where the server is built with it.

Revision ID: 0009_order_lines_lz4
Revises: 0008_order_lines_from_row
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009_order_lines_lz4"
down_revision = "0008_order_lines_from_row"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Past about 2 kB (some 30 lines) PostgreSQL compresses a row's lines, and each addItem
    # rewrites them: with pglz, the default, the orders projection's database work for an
    # event on an order of 60 to 80 lines was 104-128 µs, with lz4 65-70 µs
    # (benchmarks/orders_projection.py --passes 80). Values already stored keep pglz until
    # rewritten; both read alike. A server built without lz4 (the embedded one) keeps pglz.
    op.execute(
        """
        DO $$ BEGIN
            ALTER TABLE order_views ALTER COLUMN lines SET COMPRESSION lz4;
        EXCEPTION WHEN feature_not_supported THEN
            RAISE NOTICE 'this server has no lz4: order_views.lines stays compressed with pglz';
        END $$
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE order_views ALTER COLUMN lines SET COMPRESSION default")
