"""The web app as ``make run`` serves it (waitress, its own process) with the
real worker and providers: over HTTP, then in headless Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.conftest import ROOT, ProviderService, WorkerProcess, stop_process, wait_until
from trip.models import demo_trip

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


HAVE_CHROMIUM = Path(CHROMIUM).exists()


@dataclass
class WebApp:
    url: str
    task_queue: str


@pytest.fixture(scope="module")
def web_app(dev_client: Client, providers: ProviderService, dev_ui_url: str) -> Iterator[WebApp]:
    queue = f"tq-{uuid.uuid4().hex}"
    worker = WorkerProcess(dev_client, providers.url, queue)
    env = dict(
        os.environ,
        TEMPORAL_ADDRESS=dev_client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=dev_client.namespace,
        TEMPORAL_UI_URL=dev_ui_url,
        BOOKING_TASK_QUEUE=queue,
        SECRET_KEY=uuid.uuid4().hex,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("web app listening on "), line
        yield WebApp(url=line.split()[-1], task_queue=queue)
    finally:
        stop_process(proc)
        worker.stop()


class Browserless:
    """A person with a form: keeps cookies, reads the tokens, submits."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=15)

    def tokens(self) -> dict[str, str]:
        page = self.http.get("/").text
        return {
            name: re.search(rf'name="{name}" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            for name in ("csrf_token", "form_token")
        }

    def book(self, **fields: str) -> str:
        response = self.http.post("/bookings", data={**demo_trip(date.today()), **self.tokens(), **fields})
        assert response.status_code == 303, response.text
        return str(response.headers["Location"])

    def status(self, location: str) -> dict[str, Any]:
        response = self.http.get(f"{location}/status")
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data


async def poll_until_closed(user: Browserless, location: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def closed() -> bool:
        seen.append(user.status(location))
        return bool(seen[-1]["closed"])

    await wait_until(closed, what=f"{location} to close", timeout=60)
    return seen[-1]


@pytest.mark.parametrize(
    ("scenario", "expected", "active"),
    [
        ("happy", "COMPLETED", ["car", "flight", "hotel"]),
        ("flight-sold-out", "ROLLED_BACK", []),
    ],
)
async def test_form_to_final_status_over_http(
    web_app: WebApp, providers: ProviderService, scenario: str, expected: str, active: list[str]
) -> None:
    user = Browserless(web_app.url)
    location = user.book(scenario=scenario)
    workflow_id = location.rsplit("/", 1)[1]
    data = await poll_until_closed(user, location)
    assert data["status"] == expected
    assert set(data) >= {
        "workflow_id",
        "status",
        "closed",
        "steps",
        "compensation_plan",
        "failure",
        "confirmations",
        "outstanding",
        "error",
        "web_ui_url",
    }
    assert [s["name"] for s in data["steps"]] == ["book_car", "book_hotel", "book_flight"]
    assert providers.active_kinds(workflow_id) == active
    if expected == "ROLLED_BACK":
        assert data["error"]["type"] == "BookingRolledBack"
        assert data["failure"]["step"] == "book_flight" and data["failure"]["type"] == "SoldOut"
        assert {s["name"]: s["state"] for s in data["steps"]}["book_car"] == "compensated"
    else:
        assert set(data["confirmations"]) == {"car", "hotel", "flight"}
    # The bookings list finds it under its status, and not under another.
    await wait_until(
        lambda: workflow_id in user.http.get(f"/bookings?status={expected}").text, what="the list to show the booking"
    )
    other = "ROLLED_BACK" if expected == "COMPLETED" else "COMPLETED"
    assert workflow_id not in user.http.get(f"/bookings?status={other}").text


async def test_cancel_from_the_status_page(web_app: WebApp, providers: ProviderService) -> None:
    user = Browserless(web_app.url)
    location = user.book(scenario="slow", mode="sequential")
    workflow_id = location.rsplit("/", 1)[1]
    await wait_until(lambda: providers.active_kinds(workflow_id) == ["car"], what="the car booking", timeout=30)
    page = user.http.get(location).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    response = user.http.post(f"{location}/cancel", data={"csrf_token": csrf.group(1)})
    assert response.status_code == 303
    assert "Cancellation requested" in user.http.get(location).text
    data = await poll_until_closed(user, location)
    assert data["status"] == "CANCELLED"
    assert providers.active_kinds(workflow_id) == []
    forged = user.http.post(f"{location}/cancel", data={"csrf_token": "forged"})
    assert forged.status_code == 400


def screenshots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must install it (apt-get install chromium)")
        pytest.skip("browser tests need Debian's chromium: `apt-get install chromium` (CI installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_browser_books_watches_and_opens_the_web_ui(
    web_app: WebApp, browser: Any, tmp_path: Path, providers: ProviderService
) -> None:
    shots = screenshots_dir(tmp_path)
    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    await page.goto(web_app.url + "/")
    await page.get_by_label("Full name").fill("Grace Hopper")
    await page.screenshot(path=str(shots / "form.png"), full_page=True)

    # Happy path: the page updates itself to Completed.
    await page.get_by_label("Demo scenario").select_option("happy")
    await page.get_by_role("button", name="Book the trip").click()
    await page.wait_for_url(re.compile(r"/bookings/trip-[0-9a-f]{32}$"))
    await page.locator("#saga-status", has_text="Completed").wait_for(timeout=60_000)
    for step in ("book_car", "book_hotel", "book_flight"):
        await page.locator(f'tr[data-step="{step}"] .state', has_text="succeeded").wait_for()
    await page.screenshot(path=str(shots / "completed.png"), full_page=True)

    # Recover backward: the compensations show up on the page.
    await page.goto(web_app.url + "/")
    await page.get_by_label("Full name").fill("Grace Hopper")
    await page.get_by_label("Mode").select_option("sequential")
    await page.get_by_label("Demo scenario").select_option("flight-sold-out")
    await page.get_by_role("button", name="Book the trip").click()
    await page.locator("#saga-status", has_text="Rolled back").wait_for(timeout=60_000)
    await page.locator('tr[data-step="book_car"] .state', has_text="compensated").wait_for()
    await page.locator('tr[data-step="book_hotel"] .state', has_text="compensated").wait_for()
    await page.locator('tr[data-step="book_flight"] .state', has_text="failed").wait_for()
    assert "SoldOut" in await page.locator("#failure").inner_text()
    await page.screenshot(path=str(shots / "rolled-back.png"), full_page=True)
    workflow_id = page.url.rsplit("/", 1)[1]
    assert providers.active_kinds(workflow_id) == []

    # One click to the same run in the Temporal Web UI, served by the dev server.
    link = await page.locator("#web-ui-link").get_attribute("href")
    assert link and link.endswith(f"/workflows/{workflow_id}")
    await page.locator("#web-ui-link").click()
    await page.wait_for_url(re.compile(re.escape(workflow_id)))
    await page.get_by_text(workflow_id).first.wait_for(timeout=30_000)
    # The run's failure, as the workflow raised it, is on the page.
    await page.get_by_text("Trip not booked: book_flight failed").first.wait_for(timeout=30_000)
    await page.screenshot(path=str(shots / "webui-rolled-back.png"))


async def test_form_errors_in_the_browser_keep_the_values(web_app: WebApp, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 390, "height": 900})  # a phone-width screen
    await page.goto(web_app.url + "/")
    await page.get_by_label("Full name").fill("<b>Ada</b>")
    await page.get_by_label("Check-out").fill("2001-01-01")
    await page.get_by_role("button", name="Book the trip").click()
    await page.locator("#traveller_name-error").wait_for()
    assert await page.get_by_label("Full name").input_value() == "<b>Ada</b>"
    assert "in the past" in await page.locator("#hotel_check_out-error").inner_text()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the form must not scroll sideways on a phone"
