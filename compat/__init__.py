"""The one place that relies on libraries' private internals.

Each name here stands in for something a library does not publish; tests/test_compat.py
has one test per internal, so an upgrade that moves one breaks that test and says which.
The version pins in pyproject.toml name this module. Import from the library modules
(`compat.strawberry`, `compat.graphql`, `compat.asyncpg`, `compat.opentelemetry`,
`compat.embedded_postgres`) so that a layer loads only the library it already uses
(eventstore/ never imports GraphQL).

One private hook is overridden rather than called: api/websocket.py's
`_send_result_stream` (strawberry's graphql-transport-ws handler); its test is there too.
"""
