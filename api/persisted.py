"""Persisted documents: Apollo's automatic persisted queries (APQ) and trusted documents.

APQ: a request's `extensions.persistedQuery` is `{"version": 1, "sha256Hash": H}`. Without
`query` the stored document H runs, or the answer is PERSISTED_QUERY_NOT_FOUND (HTTP 200:
Apollo's link then sends the text with the hash). With `query`, H must be the text's
lower-case hex SHA-256; the document runs, and is stored for every process (service's
`DocumentStore`) when it parses and validates and the caller has a valid token. A request without
`persistedQuery` pays one dict lookup here.

Trusted documents (`EVENTGRAPH_TRUSTED_DOCUMENTS`): only the file's documents run, by
hash or by identical text; nothing is stored. Operations that select only meta fields
(`__schema`, `__type`, `__typename`) still run while introspection is on, so GraphiQL
can show the schema; turn introspection off to refuse them too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from api.limits import QueryGuard
from service.persisted_documents import DocumentStore

log = logging.getLogger(__name__)

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
_SHA256_HEX = re.compile("[0-9a-f]{64}")
KNOWN_DOCUMENTS_BYTES = 8 * 1024 * 1024  # per process, in front of the shared store


class DocumentRefused(Exception):
    """The request's document cannot run: a coded error before anything is parsed.

    `status` is the HTTP status for `application/graphql-response+json` clients;
    `json_status` for `application/json` ones, whom the GraphQL-over-HTTP spec answers
    200 for every well-formed request."""

    def __init__(self, code: str, message: str, status: int, json_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.json_status = json_status


def _bad_input(message: str) -> DocumentRefused:
    return DocumentRefused("BAD_USER_INPUT", message, 400, 400)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def persisted_hash(extensions: Mapping[str, Any] | None) -> str | None:
    """`extensions.persistedQuery.sha256Hash`, checked; None when there is none."""
    persisted = extensions.get("persistedQuery") if extensions else None
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise _bad_input('Unsupported persisted query: send {"version": 1, "sha256Hash": ...}.')
    sha256_hash = persisted.get("sha256Hash")
    if not is_sha256_hex(sha256_hash):
        raise _bad_input("`persistedQuery.sha256Hash` must be a SHA-256 in lower-case hex.")
    return str(sha256_hash)


def load_trusted_documents(path: Path) -> dict[str, str]:
    """The trusted documents file, checked: every key is its document's SHA-256."""
    try:
        documents = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        raise ValueError(f"EVENTGRAPH_TRUSTED_DOCUMENTS: cannot read {path}: {error}") from None
    if not isinstance(documents, dict) or not all(isinstance(d, str) for d in documents.values()):
        raise ValueError(
            f"EVENTGRAPH_TRUSTED_DOCUMENTS: {path} must map hashes to document strings"
        )
    wrong = [key for key, document in documents.items() if key != sha256_hex(document)]
    if wrong:
        raise ValueError(
            f"EVENTGRAPH_TRUSTED_DOCUMENTS: {len(wrong)} key(s) in {path} are not the lower-case"
            f" hex SHA-256 of their document, e.g. {wrong[0][:80]!r}"
        )
    return documents


class KnownDocuments:
    """Documents this process has stored or found, least recently used dropped first past
    `max_bytes`: a hit costs no round trip to the shared store."""

    def __init__(self, max_bytes: int = KNOWN_DOCUMENTS_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._documents: OrderedDict[str, str] = OrderedDict()

    def get(self, sha256_hash: str) -> str | None:
        document = self._documents.get(sha256_hash)
        if document is not None:
            self._documents.move_to_end(sha256_hash)
        return document

    def add(self, sha256_hash: str, document: str) -> None:
        size = sys.getsizeof(document)
        if sha256_hash in self._documents or size > self._max_bytes:
            return
        self._documents[sha256_hash] = document
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, dropped = self._documents.popitem(last=False)
            self._bytes -= sys.getsizeof(dropped)


def selects_only_meta_fields(document: DocumentNode) -> bool:
    """Every operation's root fields are `__schema`, `__type` or `__typename`."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    seen: set[str] = set()

    def only_meta(selection_set: SelectionSetNode) -> bool:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if not selection.name.value.startswith("__"):
                    return False
            elif isinstance(selection, InlineFragmentNode):
                if not only_meta(selection.selection_set):
                    return False
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None:
                    return False
                if name not in seen:
                    seen.add(name)
                    if not only_meta(fragment.selection_set):
                        return False
        return True

    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return bool(operations) and all(only_meta(o.selection_set) for o in operations)


class PersistedDocuments:
    """Turns a request's (query, persisted hash) into the document to run."""

    def __init__(
        self,
        guard: QueryGuard,
        store: Callable[[], DocumentStore],
        *,
        trusted: Mapping[str, str] | None = None,
        introspection: bool = True,
        max_document_bytes: int = 1024 * 1024,
    ) -> None:
        self.trusted = trusted  # None: APQ mode
        self._trusted_texts = frozenset(trusted.values()) if trusted is not None else frozenset()
        self._guard = guard
        self._store = store
        self._introspection = introspection
        self._max_document_bytes = max_document_bytes
        self._known = KnownDocuments()
        self._store_failed_at = 0.0

    async def document(self, query: str | None, sha256_hash: str | None, may_store: bool) -> str:
        """The document to run; DocumentRefused when there is none that may run. Only
        callers with a valid token (`may_store`) add documents to the shared store: an
        anonymous caller can run nothing but meta fields, and must not fill Redis."""
        if query:
            if sha256_hash is not None and sha256_hex(query) != sha256_hash:
                raise _bad_input("`persistedQuery.sha256Hash` is not the SHA-256 of `query`.")
            if self.trusted is not None:
                self._check_trusted(query)
            elif sha256_hash is not None and may_store:
                await self._register(sha256_hash, query)
            return query
        if sha256_hash is None:
            raise _bad_input("No GraphQL query found in the request.")
        found = (
            self.trusted.get(sha256_hash)
            if self.trusted is not None
            else await self._lookup(sha256_hash)
        )
        if found is None:
            # the message and code Apollo's persisted-queries link looks for
            raise DocumentRefused(NOT_FOUND, "PersistedQueryNotFound", 200)
        return found

    def _check_trusted(self, query: str) -> None:
        if query in self._trusted_texts:
            return
        if self._introspection:
            try:
                if selects_only_meta_fields(self._guard.parse(query)):
                    return
            except GraphQLError:
                pass
        raise DocumentRefused(
            "FORBIDDEN",
            "Only trusted documents run on this server, and this is not one of them.",
            403,
        )

    async def _lookup(self, sha256_hash: str) -> str | None:
        document = self._known.get(sha256_hash)
        if document is None:
            try:
                document = await self._store().get(sha256_hash)
            except Exception as error:  # the store is down: a miss (the client sends the text)
                self._store_failed(error)
                return None
            if document is not None:
                self._known.add(sha256_hash, document)
        return document

    async def _register(self, sha256_hash: str, query: str) -> None:
        """Stores a document that parses and validates (both cached for the run that follows)."""
        if len(query.encode()) > self._max_document_bytes:
            return  # runs, but is never stored: the store holds no more than a body's worth
        try:
            if self._guard.validate(query):
                return
        except GraphQLError:  # a syntax error: the run reports it
            return
        try:
            await self._store().put(sha256_hash, query)
        except Exception as error:  # it still runs; the client registers it again later
            self._store_failed(error)
            return
        self._known.add(sha256_hash, query)

    def _store_failed(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._store_failed_at >= 10:  # a warning per 10 s at most, not per request
            self._store_failed_at = now
            log.warning("persisted documents store unavailable: %r", error)
