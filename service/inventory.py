"""Product command handlers (staff only): register and restock, on the product's stream."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from domain.aggregate import aggregate_id_of
from domain.ids import check_id
from domain.product import Product, product_stream
from service.context import RequestContext
from service.errors import NotFound
from service.stream_commands import Command, CommandResult, StreamCommands

ProductResult = CommandResult[Product]


class ProductCommands:
    def __init__(self, commands: StreamCommands) -> None:
        self._commands = commands

    async def register_product(
        self,
        ctx: RequestContext,
        *,
        sku: str,
        name: str,
        price: Decimal | str,
        currency: str = "USD",
        initial_stock: int = 0,
    ) -> ProductResult:
        ctx.principal.require_staff("register products")
        return await self._run(
            ctx, sku, lambda p: p.register(name, price, currency, initial_stock), must_exist=False
        )

    async def restock_product(self, ctx: RequestContext, *, sku: str, quantity: int) -> ProductResult:
        ctx.principal.require_staff("restock products")
        return await self._run(ctx, sku, lambda p: p.restock(quantity))

    async def _run(
        self,
        ctx: RequestContext,
        sku: str,
        decide: Callable[[Product], None],
        *,
        must_exist: bool = True,
    ) -> ProductResult:
        check_id(sku, "sku")

        def checked(product: Product) -> None:
            if must_exist and not product.exists:
                raise NotFound(f"product {sku} not found")
            decide(product)

        return await self._commands.execute(
            Command(
                stream_id=product_stream(sku),
                new_aggregate=lambda stream_id: Product(aggregate_id_of(stream_id)),
                decide=checked,
                metadata=ctx.event_metadata(),
            )
        )
