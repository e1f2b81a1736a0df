"""Parsed documents with their validation, prices and plans, in one LRU bounded in bytes.

A client sends the same few documents over and over, so each is parsed, validated,
priced and planned once. Counting entries is not enough (CONTRACT 7.1): 600 distinct
`{ __typename }` documents padded with a 900 KB comment grew a process by 1 GB. Each
entry is charged by its text, at what a dense document costs once parsed, validated and
compiled (measured with tracemalloc: 50-120 bytes per character, about 3 KB for
`{ __typename }`), so a comment-padded document is overcharged, never undercharged. A
document that would take more than a sixteenth of the budget is not kept at all.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from graphql import DocumentNode, GraphQLError

if TYPE_CHECKING:
    from api.cost import Price
    from api.operations import Plan

BYTES_PER_CHARACTER = 120
ENTRY_BYTES = 4096
LARGEST_SHARE = 16  # a document charged more than budget / this is not kept


@dataclass(slots=True, eq=False)
class CachedDocument:
    document: DocumentNode
    errors: list[GraphQLError] | None = None  # validation's, once run
    prices: dict[str | None, Price] = field(default_factory=dict)  # by operation name
    plans: dict[str | None, Plan] = field(default_factory=dict)  # by operation name (HTTP)


def charge(query: str) -> int:
    return ENTRY_BYTES + BYTES_PER_CHARACTER * len(query)


class DocumentCache:
    """Least recently used first out, once the charged bytes pass `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, CachedDocument] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: str) -> CachedDocument | None:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
        return entry

    def add(self, query: str, entry: CachedDocument) -> None:
        cost = charge(query)
        if cost > self.max_bytes // LARGEST_SHARE or query in self._entries:
            return
        self._entries[query] = entry
        self.bytes += cost
        while self.bytes > self.max_bytes:
            evicted, _ = self._entries.popitem(last=False)
            self.bytes -= charge(evicted)
