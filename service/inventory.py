"""Product command handlers (staff only): register and restock, on the product's stream."""

from __future__ import annotations

from domain.commands import RegisterProduct, RestockProduct
from domain.ids import check_id
from domain.product import Product, product_stream
from service.context import RequestContext
from service.errors import NotFound
from service.handlers import Handler, Plan
from service.stream_commands import CommandResult

ProductResult = CommandResult[Product]


def register_product(ctx: RequestContext, command: RegisterProduct) -> Plan[Product]:
    ctx.principal.require_staff("register products")
    check_id(command.sku, "sku")
    return Plan(
        product_stream(command.sku),
        Product,
        lambda p: p.register(command.name, command.price, command.currency, command.initial_stock),
    )


def restock_product(ctx: RequestContext, command: RestockProduct) -> Plan[Product]:
    ctx.principal.require_staff("restock products")
    check_id(command.sku, "sku")

    def decide(product: Product) -> None:
        if not product.exists:
            raise NotFound(f"product {command.sku} not found")
        product.restock(command.quantity)

    return Plan(product_stream(command.sku), Product, decide)


PRODUCT_HANDLERS: tuple[Handler, ...] = (register_product, restock_product)
