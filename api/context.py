"""The per-request (or per-WebSocket) GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry

from api.auth import Unauthenticated
from service.container import Services
from service.context import Principal, RequestContext


@dataclass
class Context:
    services: Services
    correlation_id: str
    authenticated: Principal | Unauthenticated | None  # None: no credentials sent
    loaders: dict[str, Any] = field(default_factory=dict)  # per-request DataLoaders by name
    consistency: list[Any] = field(default_factory=list)  # read-your-writes waits, for `extensions`

    @property
    def principal(self) -> Principal:
        """The caller; asking for it is what makes an operation need a token."""
        if isinstance(self.authenticated, Principal):
            return self.authenticated
        if isinstance(self.authenticated, Unauthenticated):
            raise self.authenticated
        raise Unauthenticated("this operation needs 'Authorization: Bearer <token>'")

    @property
    def ctx(self) -> RequestContext:
        settings = self.services.settings
        return RequestContext.new(
            self.principal,
            self.correlation_id,
            service=settings.service_name,
            service_version=settings.service_version,
        )


Info = strawberry.Info[Context, None]
