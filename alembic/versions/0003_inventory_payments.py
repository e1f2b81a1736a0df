"""Inventory and payments read tables: products, wallets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per product, from its stream (readmodels/products.py); `version`
    # is the stream version applied, which makes a replayed batch a no-op.
    op.execute(
        """
        CREATE TABLE product_views (
            sku         text        PRIMARY KEY,
            name        text        NOT NULL,
            price       numeric     NOT NULL,
            currency    text        NOT NULL,
            available   integer     NOT NULL,
            reserved    integer     NOT NULL,
            version     integer     NOT NULL,
            updated_at  timestamptz NOT NULL
        )
        """
    )
    # What each order in flight holds of a product: a release or consumption
    # names only the order, the quantity comes from here.
    op.execute(
        """
        CREATE TABLE product_holds (
            sku       text     NOT NULL,
            order_id  text     NOT NULL,
            quantity  integer  NOT NULL,
            PRIMARY KEY (sku, order_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE wallet_views (
            customer_id  text        PRIMARY KEY,
            currency     text        NOT NULL,
            balance      numeric     NOT NULL,
            version      integer     NOT NULL,
            updated_at   timestamptz NOT NULL
        )
        """
    )
    op.execute("INSERT INTO projection_checkpoints (name) VALUES ('products'), ('wallets')")


def downgrade() -> None:
    op.execute("DELETE FROM projection_checkpoints WHERE name IN ('products', 'wallets', 'products__rebuild', 'wallets__rebuild')")
    op.execute("DROP TABLE wallet_views")
    op.execute("DROP TABLE product_holds")
    op.execute("DROP TABLE product_views")
