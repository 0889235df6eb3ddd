"""Travellers' data is ciphertext in Temporal, and still readable through the codec.

Anyone with read access to the cluster (or its backups, or the Web UI without
the codec server) sees a run's history as a client without our codec sees it:
that view must hold neither the name nor the e-mail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToJson
from temporalio.api.common.v1 import Payload
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.converter import DataConverter

from activities import BookingActivities, make_http_client
from tests.conftest import ProviderService, make_request
from trip import SA_TRAVELLER
from trip.models import BookingRequest, Scenario
from trip.status import SagaStatus
from wiring.codec import (
    ENCODING,
    METADATA_KEY_ID,
    EncryptionCodec,
    KeyRing,
    UnknownKeyError,
    data_converter,
    keyring_of,
    traveller_tag,
)
from wiring.outcome import await_outcome
from wiring.paused_status import list_executions
from wiring.start import start_booking
from wiring.worker import build_worker

NAME, EMAIL = "Ada Lovelace", "ada@example.com"


def with_converter(client: Client, converter: Any) -> Client:
    """The same connection, another data converter."""
    return Client(**{**client.config(), "data_converter": converter})


async def raw_history_text(client: Client, workflow_id: str) -> str:
    """What a client with no codec (or ``temporal workflow show -o json``) sees:
    every event and the run's description, memo and user metadata included."""
    plain = with_converter(client, DataConverter.default)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    described = await plain.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace=plain.namespace, execution={"workflow_id": workflow_id})
    )
    return history.to_json() + MessageToJson(described)


@pytest_asyncio.fixture
async def sold_out_run(
    dev_client: Client, providers: ProviderService, task_queue: str
) -> AsyncIterator[tuple[str, SagaStatus | None]]:
    """A flight-sold-out booking run to its end: input, activities, a failure and its undos."""
    async with (
        make_http_client(providers.url) as http,
        build_worker(dev_client, BookingActivities(http), task_queue=task_queue),
    ):
        handle = await start_booking(dev_client, make_request(Scenario.FLIGHT_SOLD_OUT), task_queue=task_queue)
        outcome = await await_outcome(dev_client, handle)
    yield handle.id, outcome.status


async def test_history_without_the_codec_holds_no_personal_data(
    dev_client: Client, sold_out_run: tuple[str, SagaStatus | None]
) -> None:
    workflow_id, status = sold_out_run
    assert status is SagaStatus.ROLLED_BACK
    raw = await raw_history_text(dev_client, workflow_id)
    assert "YmluYXJ5L2VuY3J5cHRlZA==" in raw  # base64 of our "binary/encrypted" encoding
    for secret in (NAME, EMAIL, "Lovelace", "ada@"):
        assert secret not in raw
    # Failure messages are encrypted too (``encode_common_attributes``): the
    # provider's "no flight left for ..." and the saga's rollback summary.
    assert "no flight left" not in raw
    assert "Encoded failure" in raw


async def test_with_the_codec_everything_decodes(
    dev_client: Client, sold_out_run: tuple[str, SagaStatus | None]
) -> None:
    workflow_id, _ = sold_out_run
    handle = dev_client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [req] = await dev_client.data_converter.decode(started.input.payloads, [BookingRequest])
    assert req.traveller.name == NAME and req.traveller.email == EMAIL

    description = await handle.describe()
    assert NAME in (await description.static_summary() or "")
    assert EMAIL in (await description.static_details() or "")
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK and outcome.error_message
    assert "BookingRolledBack" == outcome.error_type

    # The bookings list shows the real name, decrypted from the memo.
    [row] = await list_executions(dev_client, f'WorkflowId = "{workflow_id}"', limit=1)
    assert row.traveller == NAME
    # Search still works, by tag.
    tag = traveller_tag(NAME, keyring_of(dev_client.data_converter))
    assert (await handle.describe()).typed_search_attributes.get(SA_TRAVELLER) == tag


async def test_a_run_started_under_key_a_decodes_after_b_becomes_current(
    dev_client: Client, providers: ProviderService, task_queue: str
) -> None:
    ring_a = KeyRing.generate("a")
    client_a = with_converter(dev_client, data_converter(ring_a))
    async with (
        make_http_client(providers.url) as http,
        build_worker(client_a, BookingActivities(http), task_queue=task_queue),
    ):
        handle = await start_booking(client_a, make_request(Scenario.HAPPY), task_queue=task_queue)
        assert (await await_outcome(dev_client, handle)).status is SagaStatus.COMPLETED

    ring_b = ring_a.rotated("b")
    client_b = with_converter(dev_client, data_converter(ring_b))
    history = await client_b.get_workflow_handle(handle.id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata[METADATA_KEY_ID] == b"a"
    [req] = await client_b.data_converter.decode(started.input.payloads, [BookingRequest])
    assert req.traveller.name == NAME
    # New payloads use b; the tag key did not rotate, so search by name still finds old runs.
    [new] = await EncryptionCodec(ring_b).encode([Payload(data=b"x")])
    assert new.metadata[METADATA_KEY_ID] == b"b"
    assert traveller_tag(NAME, ring_b) == traveller_tag(NAME, ring_a)
    # Without a, the old run does not decode.
    client_c = with_converter(dev_client, data_converter(KeyRing.generate("c")))
    with pytest.raises(UnknownKeyError):
        await client_c.data_converter.decode(started.input.payloads, [BookingRequest])


async def test_payloads_recorded_before_encryption_pass_through() -> None:
    codec = EncryptionCodec(KeyRing.generate())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"name": "x"}')
    assert await codec.decode([plain]) == [plain]
    [sealed] = await codec.encode([plain])
    assert b"name" not in sealed.data and sealed.metadata["encoding"] == ENCODING
    assert await codec.decode([sealed]) == [plain]


async def test_a_tampered_payload_does_not_decode() -> None:
    from cryptography.exceptions import InvalidTag

    codec = EncryptionCodec(KeyRing.generate())
    [sealed] = await codec.encode([Payload(data=b"secret")])
    tampered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(InvalidTag):
        await codec.decode([tampered])


def test_tag_is_stable_across_spacing_and_case_but_keyed() -> None:
    ring = KeyRing.generate()
    assert traveller_tag("Ada  Lovelace", ring) == traveller_tag("ada lovelace", ring)
    assert traveller_tag("Ada Lovelace", ring) != traveller_tag("Ada Lovelace", KeyRing.generate())


def test_the_key_file_is_created_0600_once_and_rotation_keeps_old_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wiring.codec import ENV_KEY_FILE, ENV_KEYS, load_keyring
    from wiring.codec import main as codec_cli

    path = tmp_path / "instance" / "codec-keys.json"
    monkeypatch.delenv(ENV_KEYS, raising=False)
    monkeypatch.setenv(ENV_KEY_FILE, str(path))
    first = load_keyring()  # first use creates it
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_keyring() == first  # and reads it after, never regenerates
    assert codec_cli(["rotate"]) == 0
    rotated = load_keyring()
    assert rotated.current != first.current
    assert rotated.keys[first.current] == first.keys[first.current]
    assert rotated.tag_key == first.tag_key
    assert path.stat().st_mode & 0o777 == 0o600
