"""Tokens (CONTRACT 7.4) over real HTTP: `exp` required, the lifetime cap, `iss`/`aud`, a
NUL in `sub`; RS256 and ES256 verified with a JSON Web Key Set that the test serves over
HTTP itself, rotated without a restart, refetched for unknown `kid`s at most once per
interval, and never holding up other requests while it is slow."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.auth import mint_token
from service.cli import main as cli
from service.container import Services
from service.settings import Settings
from tests.conftest import Api
from tests.test_http_protocol import event_count
from tests.test_rate_limits import client_of

QUERY = "{ headPosition }"


def claims(sub: str = "cus_1", role: str = "customer", ttl: int = 600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "role": role, "iat": now, "exp": now + ttl, **extra}


async def code_for(http: httpx.AsyncClient, token: str, query: str = QUERY) -> str:
    response = await http.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["errors"][0]["extensions"]["code"] if "errors" in body else "OK"


async def test_exp_is_required_and_the_lifetime_capped(api: Api, settings: Settings) -> None:
    secret = api.secret
    now = int(time.time())
    no_exp = {"sub": "cus_1", "role": "customer", "iat": now}
    assert await code_for(api.http, jwt.encode(no_exp, secret, "HS256")) == "UNAUTHENTICATED"
    week = settings.jwt_max_ttl
    assert week == 604800
    assert await code_for(api.http, jwt.encode(claims(ttl=week), secret, "HS256")) == "OK"
    too_long = jwt.encode(claims(ttl=week + 1), secret, "HS256")
    assert await code_for(api.http, too_long) == "UNAUTHENTICATED"
    # without `iat`, the lifetime counts from now
    no_iat = {"sub": "cus_1", "role": "customer", "exp": now + week + 60}
    assert await code_for(api.http, jwt.encode(no_iat, secret, "HS256")) == "UNAUTHENTICATED"
    ok_no_iat = {"sub": "cus_1", "role": "customer", "exp": now + 60}
    assert await code_for(api.http, jwt.encode(ok_no_iat, secret, "HS256")) == "OK"
    # with `iat`, the lifetime is `exp - iat`, however much of it is left
    issued_long_ago = jwt.encode(claims(ttl=60, iat=now - week), secret, "HS256")
    assert await code_for(api.http, issued_long_ago) == "UNAUTHENTICATED"
    assert await code_for(api.http, mint_token(secret, "cus_1", "customer", ttl=-1)) == "UNAUTHENTICATED"
    response = await api.http.post(
        "/graphql",
        json={"query": QUERY},
        headers={"Authorization": f"Bearer {jwt.encode(no_exp, secret, 'HS256')}"},
    )
    assert "exp" in response.json()["errors"][0]["message"]


async def test_a_cached_token_stops_working_when_it_expires(api: Api) -> None:
    token = mint_token(api.secret, "cus_1", "customer", ttl=2)
    assert await code_for(api.http, token) == "OK"  # verified, and now cached
    await asyncio.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()))
    assert await code_for(api.http, token) == "UNAUTHENTICATED"


async def test_issuer_and_audience_must_match_when_set(services: Services, settings: Settings) -> None:
    settings = dataclasses.replace(settings, jwt_issuer="https://id.example", jwt_audience="eventgraph")
    secret = settings.jwt_secret or ""
    cases = {
        "OK": claims(iss="https://id.example", aud="eventgraph"),
        "OK ": claims(iss="https://id.example", aud=["other", "eventgraph"]),
        "wrong iss": claims(iss="https://evil.example", aud="eventgraph"),
        "wrong aud": claims(iss="https://id.example", aud="other"),
        "no iss": claims(aud="eventgraph"),
        "no aud": claims(iss="https://id.example"),
    }
    async with client_of(settings, services) as http:
        for case, payload in cases.items():
            expected = "OK" if case.startswith("OK") else "UNAUTHENTICATED"
            assert await code_for(http, jwt.encode(payload, secret, "HS256")) == expected, case
        minted = mint_token(secret, "cus_1", "customer", issuer="https://id.example", audience="eventgraph")
        assert await code_for(http, minted) == "OK"


async def test_without_audience_configured_a_token_naming_one_is_fine(api: Api) -> None:
    assert await code_for(api.http, jwt.encode(claims(aud="anything", iss="x"), api.secret, "HS256")) == "OK"


async def test_a_nul_in_sub_is_bad_user_input_before_any_database_work(api: Api, dsn: str) -> None:
    for sub in ("cus\x001", "\ud800"):
        token = jwt.encode(claims(sub=sub), api.secret, "HS256")
        assert await code_for(api.http, token) == "BAD_USER_INPUT"
        create = 'mutation { createOrder(input: {customerId: "cus_1"}) { order { id } } }'
        assert await code_for(api.http, token, create) == "BAD_USER_INPUT"
    assert await event_count(dsn) == 0
    # the process is fine afterwards
    assert await code_for(api.http, api.token("cus_1"), create) == "OK"


def test_eventgraph_token_mints_hs256_with_iat_and_exp(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTGRAPH_JWT_SECRET", "cli-secret-0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("EVENTGRAPH_JWT_ISSUER", "https://id.example")
    assert cli(["token", "--sub", "cus_9", "--role", "customer", "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(token, "cli-secret-0123456789abcdef0123456789abcdef", algorithms=["HS256"])
    assert decoded["exp"] - decoded["iat"] == 120
    assert (decoded["sub"], decoded["role"], decoded["iss"]) == ("cus_9", "customer", "https://id.example")
    assert cli(["token", "--sub", "cus_9", "--role", "customer"]) == 0
    decoded = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert decoded["exp"] - decoded["iat"] == 24 * 3600
    assert cli(["token", "--sub", "cus_9", "--role", "customer", "--ttl", str(604801)]) == 2


# --- JSON Web Key Sets -------------------------------------------------------------------


class KeyServer:
    """A JWKS endpoint on a free port: its keys can change, its hits are counted, and it
    can be held (a slow identity provider)."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.hits = 0
        self.released = threading.Event()
        self.released.set()
        self.requested = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                owner.requested.set()
                owner.released.wait(30)
                body = json.dumps({"keys": owner.published}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, *keys: SigningKey) -> None:
        self.published = [key.public_jwk for key in keys]


class SigningKey:
    def __init__(self, kid: str, algorithm: str) -> None:
        self.kid = kid
        self.algorithm = algorithm
        if algorithm == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.public_jwk = {**public, "kid": kid, "use": "sig", "alg": algorithm}

    def token(self, **extra: Any) -> str:
        return jwt.encode(claims(**extra), self.private, self.algorithm, headers={"kid": self.kid})


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    server.thread.start()
    yield server
    server.released.set()
    server.server.shutdown()
    server.server.server_close()


def with_key_set(settings: Settings, server: KeyServer, **changes: Any) -> Settings:
    return dataclasses.replace(settings, jwks_url=server.url, **changes)


async def test_rs256_and_es256_from_the_key_set_and_hs256_still(
    services: Services, settings: Settings, key_server: KeyServer
) -> None:
    rsa_key, ec_key = SigningKey("rsa-1", "RS256"), SigningKey("ec-1", "ES256")
    key_server.publish(rsa_key, ec_key)
    async with client_of(with_key_set(settings, key_server), services) as http:
        assert await code_for(http, rsa_key.token()) == "OK"
        assert await code_for(http, ec_key.token(sub="ops", role="staff")) == "OK"
        assert await code_for(http, mint_token(settings.jwt_secret or "", "cus_1", "customer")) == "OK"
        assert key_server.hits == 1  # the set is cached
        # a key of the set signing with another algorithm, a token without exp, a forged one
        assert await code_for(http, rsa_key.token(ttl=604801)) == "UNAUTHENTICATED"
        no_exp = jwt.encode({"sub": "x", "role": "staff"}, rsa_key.private, "RS256", headers={"kid": "rsa-1"})
        assert await code_for(http, no_exp) == "UNAUTHENTICATED"
        impostor = SigningKey("rsa-1", "RS256")
        assert await code_for(http, impostor.token()) == "UNAUTHENTICATED"
        confused = jwt.encode(claims(), settings.jwt_secret or "", "HS256", headers={"kid": "ec-1"})
        assert await code_for(http, confused) == "OK"  # HS256 is the secret's, whatever the kid
        ec_as_rs = SigningKey("ec-1", "RS256")  # claims ec-1's kid with an RSA signature
        assert await code_for(http, ec_as_rs.token()) == "UNAUTHENTICATED"


async def test_key_rotation_without_restart_and_unknown_kids_fetch_at_most_once_per_interval(
    services: Services, settings: Settings, key_server: KeyServer
) -> None:
    old, new = SigningKey("2026-old", "RS256"), SigningKey("2026-new", "ES256")
    key_server.publish(old)
    interval = 1.0
    async with client_of(with_key_set(settings, key_server, jwks_refetch_interval=interval), services) as http:
        assert await code_for(http, old.token()) == "OK"
        assert key_server.hits == 1
        fetched = time.monotonic()
        # made-up kids within the interval: refused without asking the identity provider
        for n in range(5):
            assert await code_for(http, SigningKey(f"made-up-{n}", "ES256").token()) == "UNAUTHENTICATED"
        assert key_server.hits == 1 or time.monotonic() - fetched >= interval
        key_server.publish(new)  # rotation: the new key appears, the old one goes
        await asyncio.sleep(max(0.0, fetched + interval - time.monotonic()))
        hits = key_server.hits
        assert await code_for(http, new.token()) == "OK"  # fetched again for the new kid
        assert key_server.hits == hits + 1
        assert await code_for(http, old.token()) == "UNAUTHENTICATED"  # its key is gone


async def test_the_refetch_interval_defaults_to_ten_seconds(
    services: Services, settings: Settings, key_server: KeyServer
) -> None:
    assert settings.jwks_refetch_interval == 10.0
    key = SigningKey("k1", "ES256")
    key_server.publish(key)
    async with client_of(with_key_set(settings, key_server), services) as http:
        assert await code_for(http, key.token()) == "OK"
        for n in range(20):
            assert await code_for(http, SigningKey(f"unknown-{n}", "ES256").token()) == "UNAUTHENTICATED"
        assert key_server.hits == 1


async def test_a_slow_key_set_holds_up_only_the_tokens_that_need_it(
    services: Services, settings: Settings, key_server: KeyServer
) -> None:
    key = SigningKey("slow-1", "RS256")
    key_server.publish(key)
    key_server.released.clear()
    async with client_of(with_key_set(settings, key_server), services) as http:
        waiting = asyncio.create_task(code_for(http, key.token()))
        assert await asyncio.to_thread(key_server.requested.wait, 30)
        # the fetch is under way: others are served meanwhile
        assert await code_for(http, mint_token(settings.jwt_secret or "", "cus_1", "customer")) == "OK"
        response = await http.post("/graphql", json={"query": "{ __typename }"})
        assert response.json() == {"data": {"__typename": "Query"}}
        assert not waiting.done()
        key_server.released.set()
        assert await waiting == "OK"


async def test_an_unreachable_or_hanging_key_set_is_unauthenticated(
    services: Services, settings: Settings, key_server: KeyServer
) -> None:
    key = SigningKey("k1", "ES256")
    key_server.publish(key)
    key_server.released.clear()  # never answers in time
    async with client_of(with_key_set(settings, key_server, jwks_timeout=0.5), services) as http:
        assert await code_for(http, key.token()) == "UNAUTHENTICATED"
    unreachable = dataclasses.replace(settings, jwks_url="http://127.0.0.1:9/jwks.json")
    async with client_of(unreachable, services) as http:
        assert await code_for(http, key.token()) == "UNAUTHENTICATED"
        assert await code_for(http, mint_token(settings.jwt_secret or "", "cus_1", "customer")) == "OK"
