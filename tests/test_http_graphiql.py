"""GraphiQL at GET /graphql for browsers, from the service's own assets (no CDN)."""

from __future__ import annotations

import re

from api.graphiql import assets_installed
from tests.conftest import Api


async def test_browser_get_serves_graphiql_from_local_assets(api: Api) -> None:
    page = await api.http.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "GraphiQL" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)  # nothing remote
    if assets_installed():  # `python -m service.assets` ran (CI does it)
        for src in re.findall(r'(?:src|href)="(/graphiql-assets/[^"]+)"', html):
            asset = await api.http.get(src)
            assert asset.status_code == 200 and len(asset.content) > 1000, src
        assert '"/graphql"' in html
    else:
        assert "python -m service.assets" in html


async def test_api_clients_do_not_get_the_page(api: Api) -> None:
    response = await api.http.get("/graphql", headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    query = await api.http.get("/graphql", params={"query": "{ __typename }"}, headers={"Accept": "text/html"})
    assert query.json() == {"data": {"__typename": "Query"}}
