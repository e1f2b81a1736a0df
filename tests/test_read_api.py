"""The read side over real HTTP: order, orders, node, projections, read-your-writes."""

from __future__ import annotations

import base64

import asyncpg
import pytest

from api.readmodels import order_of
from domain.commands import AddItem, CreateOrder, SubmitOrder
from eventstore.pool import create_pool
from readmodels.leases import PROCESS
from readmodels.order_queries import OrderReadModel
from readmodels.views import OrderView
from service.container import Services
from service.settings import Settings
from tests.conftest import Api
from tests.projection_helpers import STAFF, run_to_head

ORDER_FIELDS = """id customerId status currency version cancellationReason createdAt updatedAt
  total { amount currency } lines { sku quantity unitPrice { amount currency }
  discount { amount } lineTotal { amount } }"""
CREATE = f"""mutation($input: CreateOrderInput!) {{ createOrder(input: $input) {{
  position streamVersion order {{ {ORDER_FIELDS} }} }} }}"""
ADD = f"""mutation($input: AddItemInput!) {{ addItem(input: $input) {{
  position streamVersion order {{ {ORDER_FIELDS} }} }} }}"""
ORDER = f"""query($id: ID!, $after: String) {{ order(id: $id, consistentWith: $after) {{ {ORDER_FIELDS} }} }}"""
STAFF_AS = ("staff_1", "staff")


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret="test-secret-0123456789abcdef0123456789abcdef", run_projections=False, run_relay=False, consistency_timeout=1.0)


async def _create(api: Api, customer: str = "cus_1", **extra: str) -> dict:  # type: ignore[type-arg]
    result = await api.gql(CREATE, {"input": {"customerId": customer, **extra}}, as_=(customer, "customer"))
    return result["data"]["createOrder"]  # type: ignore[no-any-return]


async def _add(api: Api, order_id: str, sku: str, price: str, customer: str = "cus_1") -> dict:  # type: ignore[type-arg]
    result = await api.gql(
        ADD, {"input": {"orderId": order_id, "sku": sku, "quantity": 2, "unitPrice": price, "discount": "0.05"}},
        as_=(customer, "customer"),
    )
    return result["data"]["addItem"]  # type: ignore[no-any-return]


async def test_fifty_writes_each_read_back_with_consistent_with(api: Api, projections: None) -> None:
    for i in range(50):
        created = await _create(api)
        order_id = created["order"]["id"]
        added = await _add(api, order_id, f"SKU{i}", "1.10")
        read = await api.gql(ORDER, {"id": order_id, "after": added["position"]})
        assert "extensions" not in read and "errors" not in read
        assert read["data"]["order"] == added["order"]  # the read model renders like the payload
        listed = await api.gql(
            "query($p: String) { orders(first: 1, consistentWith: $p) { edges { node { id version } } } }",
            {"p": added["position"]},
        )
        assert listed["data"]["orders"]["edges"] == [{"node": {"id": order_id, "version": 2}}]


async def test_a_read_past_the_timeout_answers_what_it_has_marked_stale(api: Api, services: Services, dsn: str) -> None:
    created = await _create(api)
    order_id = created["order"]["id"]
    await run_to_head(dsn)  # no runner: the next write is not projected
    added = await _add(api, order_id, "A", "3.00")
    read = await api.gql(ORDER, {"id": order_id, "after": added["position"]})
    assert read["data"]["order"]["version"] == 1 and read["data"]["order"]["lines"] == []
    assert read["extensions"] == {
        "stale": True,
        "consistency": [{"projection": "orders", "requested": added["position"], "applied": created["position"]}],
    }


async def test_consistent_with_must_be_a_position_of_this_log(api: Api, projections: None) -> None:
    created = await _create(api)
    for bad in ("abc", "-1", "99999"):
        read = await api.gql(ORDER, {"id": created["order"]["id"], "after": bad})
        assert read["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad
        assert read["data"] == {"order": None}


async def test_customers_see_only_their_own_orders(api: Api, projections: None) -> None:
    mine = await _create(api, "cus_1")
    theirs = await _create(api, "cus_2")
    last = await _create(api, "cus_2")
    position = last["position"]
    foreign = await api.gql(ORDER, {"id": theirs["order"]["id"], "after": position})
    assert foreign["data"] == {"order": None} and foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    missing = await api.gql(ORDER, {"id": "ord_nope", "after": position})
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    malformed = await api.gql(ORDER, {"id": "no spaces", "after": position})
    assert malformed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    listing = "query($c: ID) { orders(customerId: $c) { edges { node { id customerId } } } }"
    own = await api.gql(listing, {})
    assert [e["node"]["id"] for e in own["data"]["orders"]["edges"]] == [mine["order"]["id"]]
    other = await api.gql(listing, {"c": "cus_2"})
    assert other["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    staff = await api.gql(listing, {"c": "cus_2"}, as_=STAFF_AS)
    assert [e["node"]["id"] for e in staff["data"]["orders"]["edges"]] == [last["order"]["id"], theirs["order"]["id"]]
    everything = await api.gql(listing, {}, as_=STAFF_AS)
    assert len(everything["data"]["orders"]["edges"]) == 3
    node = await api.gql("query($id: ID!) { node(id: $id) { ... on Order { id status } } }", {"id": mine["order"]["id"]})
    assert node["data"]["node"] == {"id": mine["order"]["id"], "status": "DRAFT"}
    hidden = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": theirs["order"]["id"]})
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_status_filter_and_bad_page_arguments(api: Api, services: Services, projections: None) -> None:
    first = await _create(api)
    await _add(api, first["order"]["id"], "A", "1.00")
    await services.execute(STAFF, SubmitOrder(order_id=first["order"]["id"]))
    second = await _create(api)
    head = str(await services.events.head_position())
    query = "query($s: OrderStatus, $p: String, $f: Int, $a: String) { orders(status: $s, first: $f, after: $a, consistentWith: $p) { edges { node { id status } } } }"
    submitted = await api.gql(query, {"s": "SUBMITTED", "p": head})
    assert submitted["data"]["orders"]["edges"] == [{"node": {"id": first["order"]["id"], "status": "SUBMITTED"}}]
    drafts = await api.gql(query, {"s": "DRAFT", "p": head})
    assert drafts["data"]["orders"]["edges"] == [{"node": {"id": second["order"]["id"], "status": "DRAFT"}}]
    forged = base64.urlsafe_b64encode(b"event:12").decode()
    for variables in ({"f": 0}, {"f": 101}, {"a": "not-a-cursor"}, {"a": forged}):
        bad = await api.gql(query, variables)
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", variables


async def test_pages_have_no_duplicates_or_gaps_while_orders_change(
    api: Api, services: Services, projections: None
) -> None:
    initial = [(await services.execute(STAFF, CreateOrder(customer_id="cus_1"))).aggregate.id for _ in range(23)]
    page_query = """query($after: String, $p: String) { orders(first: 5, after: $after, consistentWith: $p) {
      edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }"""
    seen: list[str] = []
    after = None
    created_meanwhile = []
    for turn in range(20):
        # Between pages: new orders, and changes to orders already listed and not yet listed.
        created_meanwhile.append((await services.execute(STAFF, CreateOrder(customer_id="cus_1"))).aggregate.id)
        for order_id in (initial[turn % 23], initial[-1 - turn % 23]):
            await services.execute(STAFF, AddItem(order_id=order_id, sku=f"S{turn}", quantity=1, unit_price="2"))
        head = str(await services.events.head_position())
        page = (await api.gql(page_query, {"after": after, "p": head}))["data"]["orders"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert len(seen) == len(set(seen))
    assert set(initial) <= set(seen)
    assert [i for i in seen if i in initial] == list(reversed(initial))  # newest first
    assert created_meanwhile[0] in seen and created_meanwhile[-1] not in seen


async def test_a_listed_order_is_read_from_kept_views_until_it_changes(
    api: Api, services: Services, projections: None
) -> None:
    """Views are kept by row: read again, a page gets the same objects (and the same
    GraphQL orders); a change (a new version, or a row repaired in place) is read afresh."""
    order_id = (await _create(api))["order"]["id"]
    added = await _add(api, order_id, "A", "1.10")
    query = """query($p: String) { orders(first: 1, consistentWith: $p) {
      edges { node { id version total { amount } lines { sku lineTotal { amount } } } } } }"""
    listed = await api.gql(query, {"p": added["position"]})
    assert listed["data"]["orders"]["edges"][0]["node"] == {
        "id": order_id, "version": 2, "total": {"amount": "2.15"}, "lines": [{"sku": "A", "lineTotal": {"amount": "2.15"}}],
    }
    read = services.read_models.orders

    async def newest() -> OrderView:
        return (await read.page(customer_id=None, status=None, first=1, after=None)).items[0][1]

    kept = await newest()
    assert await newest() is kept and (await read.by_ids([order_id]))[order_id] is kept
    assert order_of(kept) is order_of(kept)
    added = await _add(api, order_id, "B", "2.00")
    listed = await api.gql(query, {"p": added["position"]})
    assert listed["data"]["orders"]["edges"][0]["node"] == {
        "id": order_id, "version": 3, "total": {"amount": "6.10"},
        "lines": [{"sku": "A", "lineTotal": {"amount": "2.15"}}, {"sku": "B", "lineTotal": {"amount": "3.95"}}],
    }
    changed = await newest()
    assert changed is not kept and changed.version == 3 and [line.sku for line in changed.lines] == ["A", "B"]
    assert order_of(changed) is not order_of(kept)
    await services.pool.execute("UPDATE order_views SET status = 'CANCELLED' WHERE id = $1", order_id)  # same version
    repaired = await newest()
    assert repaired is not changed and (repaired.version, repaired.status) == (3, "CANCELLED")


async def test_projections_status_for_staff(api: Api, services: Services, projections: None) -> None:
    created = await _create(api)
    await api.gql(ORDER, {"id": created["order"]["id"], "after": created["position"]})
    status = await api.gql("{ projections { name position lag state owner } }", as_=STAFF_AS)
    statuses = status["data"]["projections"]
    assert statuses[0] == {"name": "orders", "position": created["position"], "lag": 0, "state": "live", "owner": PROCESS}
    assert {s["name"] for s in statuses} == {"orders", "products", "wallets"}
    refused = await api.gql("{ projections { name } }")
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


class _StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    async def init(self, conn: asyncpg.Connection) -> None:
        from eventstore.pool import _init_connection

        await _init_connection(conn)
        conn.add_query_logger(lambda record: self.statements.append(record.query))


async def test_listing_orders_with_lines_costs_constant_statements(
    api: Api, services: Services, dsn: str
) -> None:
    ids = []
    for i in range(50):
        order = (await services.execute(STAFF, CreateOrder(customer_id="cus_1"))).aggregate.id
        for sku in ("A", "B", "C"):
            await services.execute(STAFF, AddItem(order_id=order, sku=f"{sku}{i}", quantity=1, unit_price="1"))
        ids.append(order)
    await run_to_head(dsn)
    counter = _StatementCounter()
    pool = await create_pool(dsn, init=counter.init)  # counts every statement the read model sends
    services.read_models.orders = OrderReadModel(pool)
    try:
        counts = {}
        for first in (50, 5, 50):  # the first round warms the connection up (codecs, types)
            counter.statements.clear()
            listed = await api.gql(
                "query($f: Int) { orders(first: $f) { edges { node { id total { amount } lines { sku lineTotal { amount } } } } } }",
                {"f": first},
            )
            edges = listed["data"]["orders"]["edges"]
            assert len(edges) == first and all(len(e["node"]["lines"]) == 3 for e in edges)
            counts[first] = len(counter.statements)
        assert counts == {5: 1, 50: 1}
        counter.statements.clear()
        aliases = " ".join(f'o{n}: order(id: "{order_id}") {{ id lines {{ sku }} }}' for n, order_id in enumerate(ids[:25]))
        many = await api.gql(f"{{ {aliases} n: node(id: \"{ids[30]}\") {{ id }} }}")
        assert len(many["data"]) == 26 and "errors" not in many
        assert len(counter.statements) == 1  # the DataLoader batches every lookup of the operation
    finally:
        await pool.close()


async def test_the_served_app_runs_the_projections_itself(dsn: str) -> None:
    """`create_app` without injected services starts the background workers, projections first."""
    import httpx

    from api.app import create_app
    from service.serving import in_process

    settings = Settings(
        database_url=dsn, jwt_secret="test-secret-0123456789abcdef0123456789abcdef", run_projections=True, run_relay=False, run_saga=False
    )
    async with in_process(create_app(settings)) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            api = Api(http, "test-secret-0123456789abcdef0123456789abcdef", port)
            created = await _create(api)
            read = await api.gql(ORDER, {"id": created["order"]["id"], "after": created["position"]})
            assert "extensions" not in read and read["data"]["order"] == created["order"]
