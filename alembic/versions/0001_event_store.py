"""Event store: events, idempotency records, outbox, processed messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `position` is assigned by the appender under one advisory lock, so it is
    # gap-free and in commit order (see eventstore/appender.py).
    op.execute(
        """
        CREATE TABLE events (
            position     bigint      PRIMARY KEY,
            event_id     uuid        NOT NULL UNIQUE,
            stream_id    text        NOT NULL,
            version      integer     NOT NULL CHECK (version >= 1),
            type         text        NOT NULL,
            data         jsonb       NOT NULL,
            metadata     jsonb       NOT NULL,
            recorded_at  timestamptz NOT NULL,
            owner        text,  -- who may read the stream besides staff (a customer id)
            CONSTRAINT events_stream_version UNIQUE (stream_id, version)
        )
        """
    )
    op.execute("CREATE INDEX events_type_position ON events (type, position)")
    op.execute("CREATE INDEX events_owner_position ON events (owner, position)")
    op.execute(
        "CREATE INDEX events_correlation ON events ((metadata->>'correlation_id'), position)"
    )
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            scope       text        NOT NULL,
            key         text        NOT NULL,
            result      jsonb       NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, key)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE outbox (
            position      bigint      PRIMARY KEY REFERENCES events (position),
            published_at  timestamptz
        )
        """
    )
    op.execute("CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL")
    op.execute(
        """
        CREATE TABLE processed_messages (
            consumer      text        NOT NULL,
            message_id    text        NOT NULL,
            processed_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, message_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE processed_messages")
    op.execute("DROP TABLE outbox")
    op.execute("DROP TABLE idempotency_keys")
    op.execute("DROP TABLE events")
