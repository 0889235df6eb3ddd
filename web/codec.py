"""The codec server: ``POST /codec/encode`` and ``POST /codec/decode``.

The Temporal Web UI and CLI send a ``Payloads`` message as protobuf JSON and get
the transformed ``Payloads`` back (the remote codec protocol); only the last
path segment says which way. It is served by the web app because that process
already holds the keys (it is a Temporal client that decrypts) and the
operator login, so there is no second process to deploy, secure and keep in
step with the key file (README, "Where the codec server runs").

Who may call it:
* a request whose ``Origin`` is not the configured Web UI origin is refused,
  and CORS headers name that one origin only;
* the caller must prove it may read travellers' data: ``Authorization:
  Bearer <CODEC_TOKEN>`` (the CLI, or a UI that forwards a token), or a
  logged-in operator's session cookie (the Web UI with "include cross-origin
  credentials"), or the token as a path segment, ``/codec/t/<token>/decode``,
  for a UI that can send neither (the dev server's ``--ui-codec-endpoint``).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, abort, current_app, request
from flask_login import current_user
from google.protobuf.json_format import MessageToJson, Parse, ParseError
from temporalio.api.common.v1 import Payloads

from web.settings import WebSettings
from wiring.codec import EncryptionCodec, UnknownKeyError, load_keyring
from wiring.secrets import read_or_create

bp = Blueprint("codec", __name__, url_prefix="/codec")

#: Where ``register`` keeps the codec, in ``app.extensions``.
CODEC_KEY = "payload_codec"
_ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def codec_token(instance: Path, settings: WebSettings | None = None) -> str:
    """CODEC_TOKEN from the environment, else one generated once into the
    git-ignored instance folder (0600), which ``make run`` reads too."""
    configured = (settings or WebSettings.load()).codec_token
    if configured:
        return configured.get_secret_value()
    return read_or_create(instance / "codec_token", lambda: secrets.token_urlsafe(32)).strip()


def ui_origins(ui_url: str) -> str:
    """The UI's origin; for a loopback UI also its other name, since the dev
    server prints ``localhost`` while our links say ``127.0.0.1``."""
    origin = origin_of(ui_url)
    parts = urlsplit(origin)
    aliases = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}
    if parts.hostname in aliases:
        port = f":{parts.port}" if parts.port else ""
        return f"{origin},{parts.scheme}://{aliases[parts.hostname]}{port}"
    return origin


def _allowed_origins() -> list[str]:
    return [o.strip() for o in str(current_app.config["CODEC_UI_ORIGIN"]).split(",") if o.strip()]


def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    allowed = _allowed_origins()
    response.headers["Access-Control-Allow-Origin"] = origin if origin in allowed else allowed[0]
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Vary"] = "Origin"
    return response


def _check_origin() -> None:
    # Browsers always send Origin on cross-origin POSTs and preflights; the
    # CLI and curl send none, and are judged by their credentials alone.
    origin = request.headers.get("Origin")
    if origin is not None and origin not in _allowed_origins():
        abort(403, description="origin not allowed")


def _authorised(path_token: str | None) -> bool:
    token: str = current_app.config["CODEC_TOKEN"]
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    offered = path_token if path_token is not None else (bearer.strip() if scheme == "Bearer" else "")
    if offered and hmac.compare_digest(offered.encode(), token.encode()):
        return True
    return bool(current_user.is_authenticated)


def _transform(direction: str, path_token: str | None) -> Response:
    _check_origin()
    if request.method == "OPTIONS":  # CORS preflight: no credentials are sent with it
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return _cors(response)
    if not _authorised(path_token):
        return _cors(Response("codec: log in as an operator or send the codec token\n", status=401))
    try:
        payloads = Parse(request.get_data(as_text=True), Payloads())
    except ParseError as err:
        return _cors(Response(f"codec: not a Payloads message: {err}\n", status=400))
    codec: EncryptionCodec = current_app.extensions[CODEC_KEY]
    try:
        out = (
            [codec.encrypt(p) for p in payloads.payloads]
            if direction == "encode"
            else [codec.decrypt(p) for p in payloads.payloads]
        )
    except UnknownKeyError as err:
        return _cors(Response(f"codec: {err}\n", status=422))
    return _cors(Response(MessageToJson(Payloads(payloads=out)), mimetype="application/json"))


@bp.route("/<any(encode, decode):direction>", methods=["POST", "OPTIONS"])
def transform(direction: str) -> Response:
    return _transform(direction, None)


@bp.route("/t/<token>/<any(encode, decode):direction>", methods=["POST", "OPTIONS"])
def transform_with_path_token(token: str, direction: str) -> Response:
    return _transform(direction, token)


def register(app: Flask) -> None:
    # Comma-separated origins; CODEC_UI_ORIGIN in the environment (create_app) or config overrides.
    app.config.setdefault("CODEC_UI_ORIGIN", ui_origins(app.config["TEMPORAL_UI_URL"]))
    if not app.config.get("CODEC_TOKEN"):
        app.config["CODEC_TOKEN"] = codec_token(Path(app.instance_path))
    app.extensions[CODEC_KEY] = EncryptionCodec(load_keyring())
    app.register_blueprint(bp)
