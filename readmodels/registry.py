"""The projections every runner follows; a new projection adds its class here."""

from __future__ import annotations

from readmodels.orders import OrderProjection
from readmodels.products import ProductProjection
from readmodels.projection import Projection
from readmodels.wallets import WalletProjection

PROJECTIONS: list[type[Projection]] = [OrderProjection, ProductProjection, WalletProjection]


def projection_class(name: str) -> type[Projection]:
    for cls in PROJECTIONS:
        if cls.name == name:
            return cls
    known = ", ".join(cls.name for cls in PROJECTIONS)
    raise LookupError(f"no projection named {name!r} (known: {known})")
