"""The Temporal Web UI, with the dev server's codec endpoint set to the web
app, shows the decrypted traveller in a run's input (headless Chromium).

The same run, read without the codec, holds no name (tests/system/test_encryption.py).
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from tests.conftest import make_request
from tests.system.test_web_e2e import WebApp, browser, web_app  # noqa: F401  (fixtures)
from trip.models import Scenario
from trip.status import SagaStatus
from wiring.client import web_ui_url
from wiring.outcome import await_outcome
from wiring.start import start_booking

NAME = "Katherine Johnson"


async def test_web_ui_shows_the_decrypted_name_through_the_codec_server(
    dev_client: Client,
    web_app: WebApp,  # noqa: F811
    browser: Any,  # noqa: F811
    dev_ui_url: str,
) -> None:
    handle = await start_booking(
        dev_client, make_request(Scenario.FLIGHT_SOLD_OUT, name=NAME), task_queue=web_app.task_queue
    )
    assert (await await_outcome(dev_client, handle)).status is SagaStatus.ROLLED_BACK
    page = await browser.new_page(viewport={"width": 1200, "height": 1400})
    await page.goto(web_ui_url(handle.id, dev_client.namespace, base=dev_ui_url))
    await page.get_by_text(handle.id).first.wait_for(timeout=30_000)
    # Input, summary and failure are ciphertext in history; the UI decodes them through /codec.
    await page.get_by_text(NAME).first.wait_for(timeout=30_000)
    await page.get_by_text("Trip not booked: book_flight failed").first.wait_for(timeout=30_000)
