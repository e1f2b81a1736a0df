"""The document cache is bounded in bytes (CONTRACT 7.1): unique documents, padded or
not, never take more than its budget; the documents in use stay."""

from __future__ import annotations

import dataclasses

from api.document_cache import LARGEST_SHARE, charge
from api.limits import QueryGuard
from api.schema import build_schema
from service.settings import Settings

BUDGET = 1024 * 1024


def guard(budget: int = BUDGET) -> QueryGuard:
    settings = dataclasses.replace(Settings(), document_cache_bytes=budget)
    return build_schema(settings).guard


def test_unique_padded_documents_stay_within_the_budget() -> None:
    documents = guard()
    padding = "#" + "x" * 300 + "\n"
    for i in range(2000):
        query = f"{padding}{{ a{i}: __typename }}"
        assert documents.validate(query) == []
        assert documents.cache.bytes <= BUDGET
    assert 0 < len(documents.cache) <= BUDGET // charge(padding)


def test_a_document_too_large_for_its_share_is_not_kept() -> None:
    documents = guard()
    largest = BUDGET // LARGEST_SHARE
    huge = "{ __typename }" + " " * largest
    assert documents.parse(huge) is not documents.parse(huge)  # parsed each time
    assert len(documents.cache) == 0 and documents.cache.bytes == 0
    kept = "{ __typename }"
    assert documents.parse(kept) is documents.parse(kept)
    assert documents.cache.bytes == charge(kept)


def test_the_least_recently_used_go_first() -> None:
    queries = [f"{{ a{i:03}: __typename }}" for i in range(40)]
    documents = guard(budget=20 * charge(queries[0]))  # room for 20
    first = documents.document(queries[0])
    for query in queries[1:20]:
        documents.document(query)
    assert documents.document(queries[0]) is first  # used again: now the most recent
    for query in queries[20:39]:
        documents.document(query)
    assert documents.cache.get(queries[0]) is first
    assert [documents.cache.get(q) for q in queries[1:20]] == [None] * 19
    assert len(documents.cache) == 20
