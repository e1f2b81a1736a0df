"""Aggregate snapshots: an aggregate's state at a stream version, to fold from.

Revision ID: 0006_snapshots
Revises: 0006_apq
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006_snapshots"
down_revision = "0006_apq"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per stream and version: writers in several processes only ever add rows, so a
    # late (older) snapshot never replaces a newer one; loads take the newest usable one.
    op.execute(
        """
        CREATE TABLE snapshots (
            stream_id       text        NOT NULL,
            version         integer     NOT NULL CHECK (version >= 1),
            aggregate_type  text        NOT NULL,
            revision        integer     NOT NULL,
            state           jsonb       NOT NULL,
            recorded_at     timestamptz,  -- when the event at `version` was recorded
            taken_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (stream_id, version)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE snapshots")
