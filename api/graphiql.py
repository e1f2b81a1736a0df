"""GraphiQL served from local assets only (no CDN), with subscriptions and a headers editor.

The vendor files are fetched once at install time by ``python -m service.assets``
into ``GRAPHIQL_ASSETS_PATH`` and served under ``/graphiql-assets/``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

GRAPHIQL_ASSETS_PATH: Path = Path(__file__).resolve().parent / "static" / "graphiql" / "vendor"
ASSETS_URL = "/graphiql-assets"

# file name in the vendor dir -> (npm package@version, path inside the package tarball)
VENDOR_FILES: dict[str, tuple[str, str]] = {
    "react.production.min.js": ("react@18.3.1", "package/umd/react.production.min.js"),
    "react-dom.production.min.js": ("react-dom@18.3.1", "package/umd/react-dom.production.min.js"),
    "graphiql.min.js": ("graphiql@3.8.3", "package/graphiql.min.js"),
    "graphiql.min.css": ("graphiql@3.8.3", "package/graphiql.min.css"),
}

FETCH_HINT = "python -m service.assets"

_STYLE = """
html, body { height: 100%; margin: 0; }
#graphiql { height: 100vh; }
.eg-missing { font: 16px/1.5 system-ui, sans-serif; max-width: 40em; margin: 3em auto; }
.eg-missing code { background: #eee; padding: 0.1em 0.3em; }
"""

# Runs after the three UMD bundles. Header names are lower-cased so that the headers
# editor's {"Authorization": "Bearer ..."} also reaches the WebSocket connection_init
# payload as {"authorization": "Bearer ..."} (GraphiQL passes headers as connectionParams).
_INIT = """
(function (ENDPOINT) {
  var root = document.getElementById("graphiql");
  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    root.innerHTML = document.getElementById("eg-missing").innerHTML;
    return;
  }
  var url = new URL(ENDPOINT, window.location.href);
  var wsUrl = new URL(url.href);
  wsUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  var base = GraphiQL.createFetcher({ url: url.href, subscriptionUrl: wsUrl.href });
  function lower(headers) {
    var out = {};
    Object.keys(headers || {}).forEach(function (k) { out[k.toLowerCase()] = headers[k]; });
    return out;
  }
  function fetcher(params, opts) {
    return base(params, Object.assign({}, opts, { headers: lower(opts && opts.headers) }));
  }
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
    })
  );
})(__ENDPOINT__);
"""


def _missing_message() -> str:
    return (
        '<div class="eg-missing"><h1>GraphiQL assets are not installed</h1>'
        "<p>This server serves GraphiQL from local files only. Fetch them once with</p>"
        f"<pre><code>{FETCH_HINT}</code></pre>"
        "<p>(needs <code>npm</code>; files go to <code>api/static/graphiql/vendor/</code>), "
        "then reload this page. The GraphQL endpoint itself works without them.</p></div>"
    )


def assets_installed() -> bool:
    return all((GRAPHIQL_ASSETS_PATH / name).is_file() for name in VENDOR_FILES)


def graphiql_html(endpoint: str = "/graphql") -> str:
    """A complete GraphiQL page for ``endpoint`` that loads only ``/graphiql-assets/...``."""
    head = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>eventgraph · GraphiQL</title>\n"
        '<meta name="robots" content="noindex">\n'
        f"<style>{_STYLE}</style>\n"
    )
    if not assets_installed():
        return f"{head}</head>\n<body>\n{_missing_message()}\n</body>\n</html>\n"
    # json.dumps of a str is a valid JS string literal; "</" is escaped for the script block.
    endpoint_js = json.dumps(endpoint).replace("</", "<\\/")
    scripts = "".join(
        f'<script src="{ASSETS_URL}/{name}"></script>\n'
        for name in VENDOR_FILES
        if name.endswith(".js")
    )
    return (
        f'{head}<link rel="stylesheet" href="{ASSETS_URL}/graphiql.min.css">\n</head>\n<body>\n'
        '<div id="graphiql">Loading GraphiQL…</div>\n'
        f'<template id="eg-missing">{_missing_message()}</template>\n'
        f"<noscript>GraphiQL needs JavaScript. The endpoint is {html.escape(endpoint)}.</noscript>\n"
        f"{scripts}<script>{_INIT.replace('__ENDPOINT__', endpoint_js)}</script>\n</body>\n</html>\n"
    )


def graphiql_routes() -> list[BaseRoute]:
    """Starlette routes serving the vendor files under ``/graphiql-assets``."""
    return [
        Mount(
            ASSETS_URL,
            app=StaticFiles(directory=GRAPHIQL_ASSETS_PATH, check_dir=False),
            name="graphiql-assets",
        )
    ]
