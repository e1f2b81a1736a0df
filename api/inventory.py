"""Products and wallets: staff commands, and queries from the read tables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TypeVar

import strawberry
from strawberry.dataloader import DataLoader

from api.commands import command_mutation
from api.context import Context, Info
from api.readmodels import read_your_writes
from api.types import Money, Node
from domain.commands import DepositFunds, RegisterProduct, RestockProduct
from domain.ids import check_id
from domain.product import PRODUCT_EVENTS, product_stream
from domain.product import Product as ProductAggregate
from domain.wallet import WALLET_EVENTS
from eventstore.pool import Pool
from readmodels.consistency import pinned_source
from readmodels.products import ProductProjection, ProductView
from readmodels.wallets import WalletProjection, WalletView
from service.errors import NotFound
from service.inventory import PRODUCT_HANDLERS, ProductResult
from service.module import Module
from service.payments import WALLET_HANDLERS, WalletResult
from service.saga.reactions import Inventory, Payments

PRODUCT_ID_PREFIX = product_stream("")  # a Product's Node id is its stream id
K = TypeVar("K")
V = TypeVar("V")


@strawberry.type
class Product(Node):
    id: strawberry.ID  # the product's stream id, "product-<sku>"
    sku: str
    name: str
    price: Money
    available: int
    reserved: int

    @classmethod
    def of(cls, view: ProductView) -> Product:
        return cls(
            id=strawberry.ID(product_stream(view.sku)),
            sku=view.sku,
            name=view.name,
            price=Money.of(view.price, view.currency),
            available=view.available,
            reserved=view.reserved,
        )

    @classmethod
    def of_aggregate(cls, product: ProductAggregate) -> Product:
        return cls(
            id=strawberry.ID(product_stream(product.sku)),
            sku=product.sku,
            name=product.name,
            price=Money.of(product.price, product.currency),
            available=product.available,
            reserved=product.reserved,
        )


@strawberry.type
class Wallet:
    customer_id: strawberry.ID
    balance: Money

    @classmethod
    def of(cls, view: WalletView) -> Wallet:
        return cls(customer_id=strawberry.ID(view.customer_id), balance=Money.of(view.balance, view.currency))


@strawberry.type
class ProductPayload:
    product: Product
    position: str


@strawberry.type
class WalletPayload:
    wallet: Wallet
    position: str


@strawberry.input
class RegisterProductInput:
    sku: str
    name: str
    price: Decimal
    currency: str | None = "USD"
    initial_stock: int | None = 0


@strawberry.input
class RestockProductInput:
    sku: str
    quantity: int


@strawberry.input
class DepositFundsInput:
    customer_id: strawberry.ID
    amount: Decimal
    currency: str | None = "USD"


def _loader(
    context: Context, projection: str, fetch: Callable[[Sequence[K], Pool | None], Awaitable[dict[K, V]]]
) -> DataLoader[K, V | None]:
    """Per request: every lookup of one kind in an operation costs one statement (where
    read-your-writes pinned this request's reads of the projection, there)."""
    loader = context.loaders.get(projection)
    if loader is None:

        async def load(keys: list[K]) -> list[V | None]:
            found = await fetch(keys, pinned_source(context.consistency, projection))
            return [found.get(k) for k in keys]

        loader = context.loaders[projection] = DataLoader(load_fn=load)
    return loader


async def product_node(info: Info, node_id: str) -> Product | None:
    """The product whose Node id (its stream id) this is; None if there is none."""
    sku = node_id.removeprefix(PRODUCT_ID_PREFIX)
    if sku == node_id or not sku:
        return None
    context = info.context
    context.principal  # noqa: B018 - needs a token like every non-meta field
    view = await _loader(context, ProductProjection.name, context.services.read_models.products.by_skus).load(sku)
    return Product.of(view) if view is not None else None


@strawberry.type
class InventoryQuery:
    @strawberry.field(description="A product from the read model; `consistentWith` waits for a write.")
    async def product(self, info: Info, sku: str, consistent_with: str | None = None) -> Product | None:
        c = info.context
        c.principal  # noqa: B018 - authenticate before waiting
        check_id(sku, "sku")
        await read_your_writes(c, consistent_with, ProductProjection.name)
        view = await _loader(c, ProductProjection.name, c.services.read_models.products.by_skus).load(sku)
        if view is None:
            raise NotFound(f"product {sku} not found")
        return Product.of(view)

    @strawberry.field(description="A customer's wallet; a customer sees only its own.")
    async def wallet(
        self, info: Info, customer_id: strawberry.ID, consistent_with: str | None = None
    ) -> Wallet | None:
        c = info.context
        c.principal.require_customer(customer_id)
        check_id(customer_id, "customerId")
        await read_your_writes(c, consistent_with, WalletProjection.name)
        view = await _loader(c, WalletProjection.name, c.services.read_models.wallets.by_customers).load(customer_id)
        if view is None:
            raise NotFound(f"no wallet for {customer_id}")
        return Wallet.of(view)


def _product_payload(result: ProductResult) -> ProductPayload:
    return ProductPayload(product=Product.of_aggregate(result.aggregate), position=str(result.position))


def _wallet_payload(result: WalletResult) -> WalletPayload:
    wallet = result.aggregate
    balance = Money.of(wallet.balance, wallet.currency or "USD")
    return WalletPayload(
        wallet=Wallet(customer_id=strawberry.ID(wallet.customer_id), balance=balance), position=str(result.position)
    )


@strawberry.type
class InventoryMutation:
    register_product = command_mutation(
        RegisterProductInput, RegisterProduct, _product_payload,
        description="Staff: a new product with its price and initial stock.",
    )
    restock_product = command_mutation(
        RestockProductInput, RestockProduct, _product_payload, description="Staff: more units of a product."
    )
    deposit_funds = command_mutation(
        DepositFundsInput, DepositFunds, _wallet_payload, description="Staff: funds into a customer's wallet."
    )


INVENTORY = Module(
    name="inventory",
    events=PRODUCT_EVENTS,
    handlers=PRODUCT_HANDLERS,
    projections=(ProductProjection,),
    reactions=(Inventory,),
    queries=(InventoryQuery,),  # products' fields and wallets': one type each, as published
    mutations=(InventoryMutation,),
)

PAYMENTS = Module(
    name="payments",
    events=WALLET_EVENTS,
    handlers=WALLET_HANDLERS,
    projections=(WalletProjection,),
    reactions=(Payments,),
)
