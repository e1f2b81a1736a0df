"""Automatic persisted queries' documents, for services without Redis.

Revision ID: 0006_apq
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006_apq"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keyed by the lower-case hex SHA-256 of the document text; rows unused for
    # EVENTGRAPH_APQ_TTL are deleted by range (service/persisted_documents.py).
    op.execute(
        """
        CREATE TABLE persisted_documents (
            sha256_hash  text        PRIMARY KEY,
            document     text        NOT NULL,
            used_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX persisted_documents_by_use ON persisted_documents (used_at)")


def downgrade() -> None:
    op.execute("DROP TABLE persisted_documents")
