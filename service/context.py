"""Who is asking, and under which correlation: handed to every command and query."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from eventstore.records import time_ordered_text
from eventstore.tracing import with_traceparent
from service.errors import Forbidden, NotFound


class Role(Enum):
    CUSTOMER = "customer"
    STAFF = "staff"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role

    @property
    def privileged(self) -> bool:
        return self.role is not Role.CUSTOMER

    def can_see_customer(self, customer_id: str) -> bool:
        return self.privileged or customer_id == self.sub

    def can_read_stream(self, owner: str | None) -> bool:
        """Staff and services read every stream; a customer only the streams it owns."""
        return self.privileged or owner == self.sub

    def require_customer(self, customer_id: str) -> None:
        """Another customer's things are reported missing, never shown."""
        if not self.can_see_customer(customer_id):
            raise NotFound("not found")

    def require_staff(self, action: str) -> None:
        if self.role is not Role.STAFF:
            raise Forbidden(f"only staff may {action}")

    def require_privileged(self, action: str) -> None:
        if not self.privileged:
            raise Forbidden(f"only staff or services may {action}")


@dataclass(frozen=True)
class RequestContext:
    principal: Principal
    correlation_id: str
    causation_id: str | None = None  # the request or event that caused this command
    service: str = "eventgraph"
    service_version: str = "0.1.0"

    @classmethod
    def new(cls, principal: Principal, correlation_id: str | None = None, **kwargs: Any) -> RequestContext:
        request_id = time_ordered_text()  # time-ordered: logs sort by it
        return cls(
            principal=principal,
            correlation_id=correlation_id or request_id,
            causation_id=kwargs.pop("causation_id", request_id),
            **kwargs,
        )

    def event_metadata(self) -> dict[str, Any]:
        return with_traceparent({
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "user_id": self.principal.sub,
            "service": self.service,
            "service_version": self.service_version,
        })

    @property
    def idempotency_scope(self) -> str:
        return f"{self.principal.role.value}:{self.principal.sub}"
