"""Payload encryption: the keys, the AES-GCM ``PayloadCodec`` and the one data converter.

Every Temporal client and worker in this project gets its data converter from
``data_converter()`` here (the SDK's pydantic converter plus ``EncryptionCodec``),
so the worker, the CLI, the web app, the codec server and the tests cannot
disagree about how a payload is encrypted. Never import this from workflow
code: it reads key files. The codec itself runs outside the workflow sandbox.

Keys: ``BOOKING_KEYS`` (JSON, the same shape as the key file) if set, else the
key file ``BOOKING_KEY_FILE`` (default ``instance/codec-keys.json``, git-ignored),
created 0600 on first use. Each encrypted payload names its key id in its
metadata, so after ``python -m wiring.codec rotate`` old runs still decode with
the old key while new payloads use the new one.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from wiring.secrets import write_secret
from wiring.settings import KeySettings

ROOT = Path(__file__).resolve().parent.parent
ENV_KEYS = "BOOKING_KEYS"
ENV_KEY_FILE = "BOOKING_KEY_FILE"
DEFAULT_KEY_FILE = ROOT / "instance" / "codec-keys.json"

#: The ``encoding`` of an encrypted payload, and where its key id lives.
ENCODING = b"binary/encrypted"
METADATA_KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12


class UnknownKeyError(ValueError):
    """A payload was encrypted under a key id this key ring does not hold."""


@dataclass(frozen=True)
class KeyRing:
    """The AES-256 keys by id, which one encrypts, and the key for search tags."""

    current: str
    keys: Mapping[str, bytes]
    #: HMAC key for ``traveller_tag``; it never rotates, or search would split.
    tag_key: bytes

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"current key id {self.current!r} is not among the keys {sorted(self.keys)}")
        for key_id, key in self.keys.items():
            if len(key) != 32:
                raise ValueError(f"key {key_id!r} must be 32 bytes (AES-256), not {len(key)}")

    @classmethod
    def generate(cls, key_id: str = "k1") -> KeyRing:
        return cls(current=key_id, keys={key_id: AESGCM.generate_key(bit_length=256)}, tag_key=secrets.token_bytes(32))

    def rotated(self, key_id: str | None = None) -> KeyRing:
        """A ring whose new current key encrypts from now on; the old keys still decrypt."""
        key_id = key_id or f"k{len(self.keys) + 1}"
        if key_id in self.keys:
            raise ValueError(f"key id {key_id!r} already exists")
        return dataclasses.replace(
            self, current=key_id, keys={**self.keys, key_id: AESGCM.generate_key(bit_length=256)}
        )

    def to_json(self) -> str:
        b64 = base64.b64encode
        return json.dumps(
            {
                "current": self.current,
                "keys": {k: b64(v).decode() for k, v in self.keys.items()},
                "tag_key": b64(self.tag_key).decode(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        raw = json.loads(text)
        return cls(
            current=raw["current"],
            keys={k: base64.b64decode(v) for k, v in raw["keys"].items()},
            tag_key=base64.b64decode(raw["tag_key"]),
        )


def key_file() -> Path:
    return KeySettings.load().booking_key_file or DEFAULT_KEY_FILE


def write_key_file(ring: KeyRing, path: Path, *, replace: bool = False) -> bool:
    """Write ``ring`` as a secret file (``wiring.secrets``): 0600, whole or not
    at all. Without ``replace`` an existing file wins; returns whether ``ring`` was written."""
    return write_secret(path, ring.to_json(), replace=replace)


def ensure_key_file(path: Path | None = None) -> tuple[Path, bool]:
    """Create the key file if it is missing; returns it and whether it was created.
    Two processes starting at once both end up with the same keys."""
    path = path or key_file()
    if path.exists():
        return path, False
    return path, write_key_file(KeyRing.generate(), path)


def load_keyring() -> KeyRing:
    """The key ring from ``BOOKING_KEYS``, else the key file (created on first use)."""
    from_env = KeySettings.load().booking_keys
    if from_env:
        return KeyRing.from_json(from_env.get_secret_value())
    path, _ = ensure_key_file()
    return KeyRing.from_json(path.read_text())


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole serialised payload, metadata included.

    Payloads without our ``encoding`` pass through ``decode`` untouched: runs
    recorded before encryption (``tests/workflow/histories/``) must still replay, and
    still show in the Web UI.
    """

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keyring.current
        nonce = os.urandom(_NONCE_BYTES)
        # The key id is authenticated data: moving a payload under another id fails.
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, METADATA_KEY_ID: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(METADATA_KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(f"payload encrypted under unknown key id {key_id!r}")
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        return Payload.FromString(cipher.decrypt(nonce, sealed, key_id.encode()))


def data_converter(keyring: KeyRing | None = None) -> DataConverter:
    """The data converter of every client and worker: pydantic payloads,
    encrypted, with failure messages and stack traces encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring or load_keyring()),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def keyring_of(converter: DataConverter) -> KeyRing:
    codec = converter.payload_codec
    if not isinstance(codec, EncryptionCodec):
        raise TypeError("this client's data converter does not encrypt; build it with wiring.codec.data_converter()")
    return codec.keyring


def traveller_tag(name: str, keyring: KeyRing) -> str:
    """What ``BookingTraveller`` holds instead of the name: a keyed hash.

    Visibility cannot be encrypted, so the name never goes there. Whoever holds
    the tag key can still find a traveller's bookings by tagging the name they
    search for; nobody else can reverse or guess it from a list of names.
    """
    normalised = " ".join(name.split()).casefold()
    digest = hmac.new(keyring.tag_key, normalised.encode(), hashlib.sha256).hexdigest()
    return f"t-{digest[:24]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wiring.codec", description="Manage the payload encryption keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the key file if it is missing")
    rotate = sub.add_parser("rotate", help="add a new key and make it current; old keys keep decrypting")
    rotate.add_argument("--key-id", default=None)
    tag = sub.add_parser("tag", help="print the BookingTraveller tag for a name (to search the Web UI)")
    tag.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "init":
        path, created = ensure_key_file()
        print(f"{'created' if created else 'kept'} {path}")
    elif args.command == "rotate":
        if KeySettings.load().booking_keys:
            print(f"{ENV_KEYS} is set: rotate it where it is kept", file=sys.stderr)
            return 2
        path, _ = ensure_key_file()
        ring = KeyRing.from_json(path.read_text()).rotated(args.key_id)
        write_key_file(ring, path, replace=True)
        print(f"{path}: current key is now {ring.current} (restart workers and web processes)")
    else:
        print(traveller_tag(args.name, load_keyring()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
