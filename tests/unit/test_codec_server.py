"""The codec server as the Temporal Web UI and CLI call it: protobuf-JSON
``Payloads`` in and out, for the UI's origin only, and only with credentials.

No Temporal here: the codec needs only the keys (``BOOKING_KEYS`` from conftest).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from google.protobuf.json_format import MessageToJson, Parse
from temporalio.api.common.v1 import Payload, Payloads
from werkzeug.security import generate_password_hash

from tests.unit.conftest import PASSWORD, RecordingPortal
from web import create_app
from wiring.codec import ENCODING, data_converter

UI = "http://127.0.0.1:8233"
TOKEN = "s3cret-codec-token"


@pytest.fixture
def app() -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "TEMPORAL_PORTAL": RecordingPortal(),
            "TEMPORAL_UI_URL": UI + "/",
            "CODEC_TOKEN": TOKEN,
            "OPERATORS": {"ops": generate_password_hash(PASSWORD)},
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


async def encrypted_name() -> Payloads:
    """A payload as the worker and clients write it to history."""
    return Payloads(payloads=await data_converter().encode(["Ada Lovelace"]))


def post(client: FlaskClient, path: str, body: Payloads, **headers: str) -> Any:
    return client.post(path, data=MessageToJson(body), headers={"Content-Type": "application/json", **headers})


def plain_values(response: Any) -> list[Any]:
    payloads = Parse(response.get_data(as_text=True), Payloads()).payloads
    assert all(p.metadata["encoding"] == b"json/plain" for p in payloads)
    return [json.loads(p.data) for p in payloads]


async def test_decode_with_the_token_returns_the_plain_payload(client: FlaskClient) -> None:
    body = await encrypted_name()
    assert b"Ada" not in body.payloads[0].data
    response = post(
        client, "/codec/decode", body, Origin=UI, Authorization=f"Bearer {TOKEN}", **{"X-Namespace": "default"}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == UI
    assert plain_values(response) == ["Ada Lovelace"]


async def test_encode_then_decode_round_trips(client: FlaskClient) -> None:
    plain = Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    encoded = post(client, "/codec/encode", plain, Authorization=f"Bearer {TOKEN}")
    assert encoded.status_code == 200
    sealed = Parse(encoded.get_data(as_text=True), Payloads())
    assert sealed.payloads[0].metadata["encoding"] == ENCODING
    decoded = post(client, "/codec/decode", sealed, Authorization=f"Bearer {TOKEN}")
    assert Parse(decoded.get_data(as_text=True), Payloads()) == plain


async def test_the_token_may_be_a_path_segment_for_the_dev_servers_ui(client: FlaskClient) -> None:
    response = post(client, f"/codec/t/{TOKEN}/decode", await encrypted_name(), Origin=UI)
    assert response.status_code == 200
    assert plain_values(response) == ["Ada Lovelace"]
    assert post(client, "/codec/t/wrong-token/decode", await encrypted_name(), Origin=UI).status_code == 401


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Bearer ", TOKEN])
async def test_a_request_without_valid_auth_is_refused(client: FlaskClient, auth: str | None) -> None:
    headers = {"Origin": UI} | ({"Authorization": auth} if auth is not None else {})
    response = post(client, "/codec/decode", await encrypted_name(), **headers)
    assert response.status_code == 401
    assert "payloads" not in response.get_data(as_text=True)


async def test_a_foreign_origin_is_refused_even_with_the_token(client: FlaskClient) -> None:
    response = post(
        client, "/codec/decode", await encrypted_name(), Origin="https://evil.example", Authorization=f"Bearer {TOKEN}"
    )
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options(
        "/codec/decode", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_the_dev_servers_localhost_name_is_the_same_ui(client: FlaskClient) -> None:
    localhost = UI.replace("127.0.0.1", "localhost")
    response = post(client, f"/codec/t/{TOKEN}/decode", await encrypted_name(), Origin=localhost)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == localhost
    other_port = post(client, f"/codec/t/{TOKEN}/decode", await encrypted_name(), Origin="http://localhost:9999")
    assert other_port.status_code == 403


def test_the_preflight_allows_the_ui_origin_and_its_headers(client: FlaskClient) -> None:
    preflight = client.options(
        "/codec/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == UI
    assert "X-Namespace" in preflight.headers["Access-Control-Allow-Headers"]


async def test_a_logged_in_operator_decodes_with_the_session_cookie(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    client.post("/login", data={"csrf_token": csrf.group(1), "name": "ops", "password": PASSWORD})
    response = post(client, "/codec/decode", await encrypted_name(), Origin=UI)
    assert response.status_code == 200
    assert plain_values(response) == ["Ada Lovelace"]


def test_garbage_is_a_400(client: FlaskClient) -> None:
    response = client.post("/codec/decode", data="not json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
