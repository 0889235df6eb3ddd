"""The web app as ``make run`` serves it (cheroot, its own process) with the
real worker and providers: over HTTP, then in headless Chromium."""

from __future__ import annotations

import html
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from tests.conftest import ROOT, ProviderService, WorkerProcess, make_request, stop_process, wait_until
from tests.system import demo_recording
from tests.system.conftest import FreezableProxy
from trip.forms import demo_trip
from trip.models import Mode, RetryOverrides, Scenario
from trip.status import SagaStatus
from web.operators import add_operator
from wiring.outcome import await_outcome
from wiring.paused_status import list_executions
from wiring.start import start_booking

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


OPERATOR, OPERATOR_PASSWORD = "grace", "operator-password"


@dataclass
class WebApp:
    url: str
    task_queue: str


@pytest.fixture(scope="module")
def web_app(
    dev_client: Client,
    providers: ProviderService,
    dev_ui_url: str,
    web_codec_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebApp]:
    queue = f"tq-{uuid.uuid4().hex}"
    operators = tmp_path_factory.mktemp("web") / "operators.toml"
    add_operator(operators, OPERATOR, OPERATOR_PASSWORD)
    stack = ExitStack()
    providers_url = providers.url
    if demo_recording.RECORDING:  # the GIFs: slow enough to watch each step
        providers_url = stack.enter_context(demo_recording.slow_providers(providers.url))
    worker = WorkerProcess(dev_client, providers_url, queue)
    env = dict(
        os.environ,
        TEMPORAL_ADDRESS=dev_client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=dev_client.namespace,
        TEMPORAL_UI_URL=dev_ui_url,
        BOOKING_TASK_QUEUE=queue,
        SECRET_KEY=uuid.uuid4().hex,
        OPERATORS_FILE=str(operators),
    )
    proc = subprocess.Popen(
        # On the port the dev server's Web UI sends codec requests to (conftest).
        [sys.executable, "-m", "web", "--port", str(web_codec_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("web app listening on "), line
        yield WebApp(url=line.split()[-1], task_queue=queue)
    finally:
        stop_process(proc)
        worker.stop()
        stack.close()


class Browserless:
    """A person with a form: keeps cookies, reads the tokens, submits."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=15)

    def csrf(self, path: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.http.get(path).text)
        assert found, f"no form on {path}"
        return found.group(1)

    def log_in(self, name: str = OPERATOR, password: str = OPERATOR_PASSWORD) -> None:
        response = self.http.post(
            "/login", data={"csrf_token": self.csrf("/login"), "name": name, "password": password}
        )
        assert response.status_code == 303, response.text

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
    # Someone else with the link sees no cancel button, and their cancel does nothing.
    stranger = Browserless(web_app.url)
    assert 'id="cancel-form"' not in stranger.http.get(location).text
    refused = stranger.http.post(f"{location}/cancel", data={"csrf_token": stranger.csrf("/")})
    assert refused.status_code == 403
    assert providers.active_kinds(workflow_id) == ["car"]
    assert user.status(location)["closed"] is False
    # The traveller who booked it may cancel it, without an operator login.
    assert 'id="cancel-form"' in user.http.get(location).text
    response = user.http.post(f"{location}/cancel", data={"csrf_token": user.csrf(location)})
    assert response.status_code == 303
    assert "Cancellation requested" in user.http.get(location).text
    data = await poll_until_closed(user, location)
    assert data["status"] == "CANCELLED"
    assert providers.active_kinds(workflow_id) == []
    forged = user.http.post(f"{location}/cancel", data={"csrf_token": "forged"})
    assert forged.status_code == 400


def is_poll(request: Any) -> bool:
    """The status page's poll: the server-rendered status fragment it swaps in."""
    return str(request.url).endswith("/fragment")


async def assert_fits_a_phone(page: Any, shot: Path) -> None:
    """At a phone's width (390 px) the page does not scroll sideways: a wide table scrolls in its own box."""
    size = page.viewport_size
    await page.set_viewport_size({"width": 390, "height": 844})
    try:
        await page.screenshot(path=str(shot), full_page=True)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{page.url} is {width} px wide on a 390 px screen"
    finally:
        await page.set_viewport_size(size)


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
    await page.wait_for_url(re.compile(r"/bookings/trip-[0-9a-f]{32}-[0-9a-f]{16}$"))
    await page.locator("#saga-status", has_text="Completed").wait_for(timeout=60_000)
    for step in ("book_car", "book_hotel", "book_flight"):
        await page.locator(f'tr[data-step="{step}"] .state', has_text="succeeded").wait_for()
    # Completed: nothing will be undone, and the traveller is not told about "compensatable" steps.
    shown = await page.locator("#content").inner_text()
    assert "Would undo" not in shown and "compensatable" not in shown.lower()
    assert not await page.locator("#cancel-form").is_visible()
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
    # Rolled back is final: nothing is left for the traveller to cancel.
    assert not await page.locator("#cancel-form").is_visible()
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


@pytest_asyncio.fixture
async def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """Chromium with Playwright's video recorder working: only under ``make screenshots``."""
    if not demo_recording.RECORDING:
        pytest.skip("records the README's GIFs only under `make screenshots` (SCREENSHOTS_DIR)")
    if not HAVE_CHROMIUM:
        pytest.fail(f"make screenshots needs {CHROMIUM}: apt-get install chromium")
    # Read by the Playwright driver when it starts, so set before async_playwright().
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(demo_recording.playwright_browsers_path(tmp_path / "pw")))
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.mark.parametrize(
    ("scenario", "outcome", "states"),
    [
        # Recover forward: the airline fails three times, the fourth attempt books.
        ("flight-flaky", "Completed", {"book_car": "succeeded", "book_hotel": "succeeded", "book_flight": "succeeded"}),
        # Recover backward: sold out, so the hotel and the car are undone.
        (
            "flight-sold-out",
            "Rolled back",
            {"book_car": "compensated", "book_hotel": "compensated", "book_flight": "failed"},
        ),
    ],
)
async def test_browser_books_recorded_as_a_gif(
    web_app: WebApp,
    recorder: Any,
    providers: ProviderService,
    tmp_path: Path,
    scenario: str,
    outcome: str,
    states: dict[str, str],
) -> None:
    """The README's GIFs: the form, the live status page, the outcome."""
    shots = screenshots_dir(tmp_path)
    size = demo_recording.VIDEO_SIZE
    context = await recorder.new_context(viewport=size, record_video_dir=str(tmp_path), record_video_size=size)
    page = await context.new_page()
    await page.goto(web_app.url + "/")
    await page.get_by_label("Full name").fill("")
    await page.get_by_label("Full name").press_sequentially("Grace Hopper", delay=50)  # typed, to be seen
    await page.get_by_label("Mode").select_option("sequential")
    await page.get_by_label("Demo scenario").select_option(scenario)
    await page.get_by_role("button", name="Book the trip").click()
    await page.locator("#saga-status", has_text=outcome).wait_for(timeout=60_000)
    for step, state in states.items():
        await page.locator(f'tr[data-step="{step}"] .state', has_text=state).wait_for()
    if scenario == "flight-flaky":
        assert await page.locator('tr[data-step="book_flight"] td.attempts').inner_text() == "4"
    else:
        assert "SoldOut" in await page.locator("#failure").inner_text()
    workflow_id = page.url.rsplit("/", 1)[1]
    assert providers.active_kinds(workflow_id) == (["car", "flight", "hotel"] if outcome == "Completed" else [])
    await context.close()  # writes the video

    gif = shots / f"{scenario}.gif"
    demo_recording.webm_to_gif(Path(await page.video.path()), gif)
    assert gif.read_bytes()[:6] == b"GIF89a"
    assert gif.stat().st_size < demo_recording.GIF_MAX_BYTES, f"{gif} is {gif.stat().st_size} bytes"


@pytest_asyncio.fixture
async def browser_with_bfcache() -> AsyncIterator[Any]:
    """Chromium as people run it: Playwright turns the back/forward cache off by
    default, and that cache is what brings a spent form back on Back."""
    if not HAVE_CHROMIUM:
        pytest.skip("browser tests need Debian's chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--disable-back-forward-cache"]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def test_browser_back_change_and_submit_starts_a_new_booking(
    web_app: WebApp, browser_with_bfcache: Any, providers: ProviderService
) -> None:
    """Back, change the form, submit: a new booking, not the old one the browser restored."""
    page = await browser_with_bfcache.new_page()
    await page.goto(web_app.url + "/")
    await page.get_by_label("Demo scenario").select_option("flight-sold-out")
    await page.get_by_role("button", name="Book the trip").click()
    await page.locator("#saga-status", has_text="Rolled back").wait_for(timeout=60_000)
    first = page.url

    await page.go_back(wait_until="commit")  # a page restored from the bfcache fires no load event
    await page.get_by_label("Demo scenario").select_option("happy")
    await page.get_by_role("button", name="Book the trip").click()
    await page.wait_for_url(lambda url: "/bookings/trip-" in url and url != first)
    await page.locator("#saga-status", has_text="Completed").wait_for(timeout=60_000)
    second_id, first_id = page.url.rsplit("/", 1)[1], first.rsplit("/", 1)[1]
    assert providers.active_kinds(second_id) == ["car", "flight", "hotel"]
    assert providers.active_kinds(first_id) == []


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


# --- the operator's side: a stuck rollback (car-cancel-broken) waits in NEEDS_ATTENTION


async def start_stuck_booking(dev_client: Client, web_app: WebApp, name: str) -> WorkflowHandle[Any, Any]:
    """A booking whose car undo always fails, with a tiny undo budget: NEEDS_ATTENTION within seconds."""
    return await start_booking(
        dev_client, make_request(Scenario.CAR_CANCEL_BROKEN, name=name), task_queue=web_app.task_queue
    )


async def wait_for_attention(user: Browserless, location: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def waiting() -> bool:
        seen.append(user.status(location))
        assert not seen[-1]["closed"], seen[-1]
        return bool(seen[-1]["status"] == "NEEDS_ATTENTION")

    await wait_until(waiting, what=f"{location} to need attention", timeout=60)
    return seen[-1]


def action_error(response: httpx.Response) -> str:
    found = re.search(r'<p class="action-error" role="alert" id="action-error">([^<]*)</p>', response.text)
    assert found, "the rejection is not shown on the page"
    return html.unescape(found.group(1))


async def test_operator_resolves_a_stuck_rollback_over_http(
    web_app: WebApp, dev_client: Client, providers: ProviderService
) -> None:
    handle = await start_stuck_booking(dev_client, web_app, "Stuck Traveller")
    location = f"/bookings/{handle.id}"
    traveller = Browserless(web_app.url)
    data = await wait_for_attention(traveller, location)
    assert data["outstanding"] == ["book_car"]
    assert [o["step"] for o in data["attention"]["outstanding"]] == ["book_car"]
    assert data["attention"]["deadline"] > data["attention"]["since"]
    assert data["audit"] == []

    # A traveller sees the state, not the operator's forms, and cannot act.
    page = traveller.http.get(location).text
    assert "Needs attention:" in page and "Outstanding undos" in page and "Mark resolved" not in page
    anonymous = traveller.http.post(
        f"{location}/resolve", data={"csrf_token": traveller.csrf("/"), "step": "book_car", "note": "x"}
    )
    assert anonymous.status_code == 401
    assert traveller.http.get("/attention", follow_redirects=False).status_code == 302
    assert traveller.status(location)["status"] == "NEEDS_ATTENTION" and traveller.status(location)["audit"] == []

    operator = Browserless(web_app.url)
    operator.log_in()
    # /attention lists it (visibility catches up eventually), and the nav bar counts it.
    await wait_until(
        lambda: handle.id in operator.http.get("/attention").text, what="/attention to list it", timeout=30
    )
    listing = operator.http.get("/attention").text
    assert "Stuck Traveller" in listing and 'id="attention-count"' in listing
    page = operator.http.get(location).text
    assert "Mark resolved: book_car" in page and "Retry undo: book_car" in page

    # The workflow's validator refuses these: 409, with its own words on the page, and nothing recorded.
    csrf = operator.csrf(location)
    for form, expected in [
        ({"step": "book_car", "note": "  "}, "note must say why"),
        ({"step": "book_nothing", "note": "typo"}, "unknown step 'book_nothing'"),
        ({"step": "book_hotel", "note": "wrong step"}, "step 'book_hotel' is not outstanding"),
    ]:
        rejected = operator.http.post(f"{location}/resolve", data={"csrf_token": csrf, **form})
        assert rejected.status_code == 409, rejected.text
        assert expected in action_error(rejected)
    assert operator.status(location)["audit"] == []

    done = operator.http.post(
        f"{location}/resolve", data={"csrf_token": csrf, "step": "book_car", "note": "released by phone, ref 123"}
    )
    assert done.status_code == 303
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK and outcome.error_type == "BookingRolledBack"
    assert OPERATOR in json.dumps(outcome.error_details)
    final = await poll_until_closed(traveller, location)
    assert final["status"] == "ROLLED_BACK"
    [action] = final["audit"]
    assert (action["operator"], action["action"], action["steps"], action["note"]) == (
        OPERATOR,
        "resolve",
        ["book_car"],
        "released by phone, ref 123",
    )
    # Resolved means released outside the system: our ledger still shows the car.
    assert providers.active_kinds(handle.id) == ["car"]
    # The audit trail is on the page for everyone; acting on a closed booking is a 409.
    assert f'<td class="audit-operator">{OPERATOR}</td>' in traveller.http.get(location).text
    late = operator.http.post(f"{location}/retry", data={"csrf_token": operator.csrf(location), "step": "book_car"})
    assert late.status_code == 409


async def test_operator_retries_after_the_outage_is_lifted(
    web_app: WebApp, dev_client: Client, providers: ProviderService
) -> None:
    handle = await start_booking(
        dev_client, make_request(Scenario.CAR_CANCEL_OUTAGE, name="Outage Traveller"), task_queue=web_app.task_queue
    )
    location = f"/bookings/{handle.id}"
    operator = Browserless(web_app.url)
    operator.log_in()
    await wait_for_attention(operator, location)
    async with httpx.AsyncClient(timeout=10) as admin:
        lifted = await admin.post(f"{providers.url}/admin/outages/lift", json={"booking_id": handle.id, "kind": "car"})
    assert lifted.status_code == 200
    assert "Retry all undos" in operator.http.get(location).text
    # The "all" form names no step: every outstanding undo runs again.
    done = operator.http.post(f"{location}/retry", data={"csrf_token": operator.csrf(location)})
    assert done.status_code == 303
    assert "book_car: compensated" in operator.http.get(location).text  # the flash names the outcome
    final = await poll_until_closed(operator, location)
    assert final["status"] == "ROLLED_BACK"
    assert [(a["operator"], a["action"]) for a in final["audit"]] == [(OPERATOR, "retry_compensation")]
    assert providers.active_kinds(handle.id) == []


async def test_browser_operator_resolves_a_stuck_booking_from_the_attention_page(
    web_app: WebApp, dev_client: Client, browser: Any, tmp_path: Path
) -> None:
    handle = await start_stuck_booking(dev_client, web_app, "Katherine Johnson")
    checker = Browserless(web_app.url)
    checker.log_in()
    await wait_for_attention(checker, f"/bookings/{handle.id}")
    await wait_until(lambda: handle.id in checker.http.get("/attention").text, what="/attention to list it", timeout=30)

    shots = screenshots_dir(tmp_path)
    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    await page.goto(web_app.url + "/")
    await page.get_by_role("link", name="Operator login").click()
    await page.get_by_label("Operator name").fill(OPERATOR)
    await page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r"/attention$"))
    row = page.locator(f'tr[data-workflow-id="{handle.id}"]')
    await row.wait_for()
    assert "Katherine Johnson" in await row.inner_text() and "book_car" in await row.inner_text()
    assert "still held" in await row.inner_text()  # before the pivot, an undo that failed leaves it held
    await page.screenshot(path=str(shots / "attention.png"), full_page=True)
    await assert_fits_a_phone(page, shots / "attention-phone.png")
    await row.get_by_role("link", name=handle.id).click()
    await page.locator("#saga-status", has_text="Needs attention").wait_for()
    await page.locator("#outstanding-steps table").wait_for()
    await page.screenshot(path=str(shots / "needs-attention.png"), full_page=True)
    await assert_fits_a_phone(page, shots / "needs-attention-phone.png")
    # What is typed survives the polls that redraw the status around the form.
    await page.get_by_label("Note for book_car").fill("released by phone, ref 123")
    for _ in range(2):  # once the second poll has answered, the first one's fragment is in
        await page.wait_for_event("requestfinished", predicate=is_poll)
    assert await page.get_by_label("Note for book_car").input_value() == "released by phone, ref 123"
    await page.get_by_role("button", name="Mark book_car resolved").click()
    await page.locator("#saga-status", has_text="Rolled back").wait_for(timeout=60_000)
    await page.locator("#audit .audit-operator", has_text=OPERATOR).wait_for()
    audit = await page.locator("#audit").inner_text()
    assert "released by phone, ref 123" in audit and "resolve" in audit


async def test_browser_operator_approves_a_costly_undo_with_a_note(
    web_app: WebApp, dev_client: Client, providers: ProviderService, browser: Any, tmp_path: Path
) -> None:
    """The hotel costs a night to cancel: /attention lists it, the page offers Approve and Keep, a note is required."""
    req = make_request(Scenario.HOTEL_CANCEL_FEE, Mode.SEQUENTIAL, name="Mary Jackson")
    handle = await start_booking(dev_client, req, task_queue=web_app.task_queue)
    location = f"/bookings/{handle.id}"
    traveller = Browserless(web_app.url)
    await wait_until(
        lambda: traveller.status(location)["status"] == "AWAITING_UNDO_APPROVAL", what="the undo held", timeout=60
    )
    page_text = traveller.http.get(location).text
    assert "Undo waiting for approval" in page_text and "150.00 EUR" in page_text
    assert "Approve: cancel and pay" not in page_text  # operators only
    operator = Browserless(web_app.url)
    operator.log_in()
    refused = operator.http.post(
        f"{location}/approve-undo", data={"csrf_token": operator.csrf(location), "step": "book_hotel", "note": ""}
    )
    assert refused.status_code == 409 and "note must say why" in action_error(refused)

    shots = screenshots_dir(tmp_path)
    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    await page.goto(f"{web_app.url}/login?next=/attention")
    await page.get_by_label("Operator name").fill(OPERATOR)
    await page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    row = page.locator(f'#undo-approvals tr[data-workflow-id="{handle.id}"]')
    await row.wait_for()
    assert "book_hotel" in await row.inner_text() and "150.00 EUR" in await row.inner_text()
    await row.get_by_role("link", name=handle.id).click()
    await page.locator("#saga-status", has_text="Awaiting undo approval").wait_for()
    await page.get_by_role("button", name="Keep book_hotel").wait_for()
    await page.screenshot(path=str(shots / "undo-approval.png"), full_page=True)
    await assert_fits_a_phone(page, shots / "undo-approval-phone.png")
    await page.get_by_label("Note for book_hotel").fill("one night is less than the stay")
    await page.get_by_role("button", name="Approve undo of book_hotel").click()
    await page.locator("#saga-status", has_text="Rolled back").wait_for(timeout=60_000)
    audit = await page.locator("#audit").inner_text()
    assert "approve_undo" in audit and "one night is less than the stay" in audit and "150.00 EUR" in audit
    assert providers.active_kinds(handle.id) == []


async def test_browser_operator_retries_an_undo_once_the_outage_is_lifted(
    web_app: WebApp, dev_client: Client, providers: ProviderService, browser: Any
) -> None:
    """An operator retries a car-cancel-outage booking's undo in the browser; the ledger ends with 0 active."""
    handle = await start_booking(
        dev_client, make_request(Scenario.CAR_CANCEL_OUTAGE, name="Dorothy Vaughan"), task_queue=web_app.task_queue
    )
    location = f"/bookings/{handle.id}"
    await wait_for_attention(Browserless(web_app.url), location)
    assert providers.active_kinds(handle.id) == ["car"]

    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    await page.goto(f"{web_app.url}/login?next={location}")
    await page.get_by_label("Operator name").fill(OPERATOR)
    await page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.locator("#saga-status", has_text="Needs attention").wait_for()
    providers.lift_outage(handle.id, "car")  # the car provider's own operator ends the outage
    await page.get_by_role("button", name="Retry undo of book_car").click()
    await page.locator("#saga-status", has_text="Rolled back").wait_for(timeout=60_000)
    audit = await page.locator("#audit").inner_text()
    assert OPERATOR in audit and "retry_compensation" in audit
    assert providers.active_kinds(handle.id) == []


# --- hold and confirm: the traveller answers from the status page


async def test_browser_books_with_hold_and_confirm_and_gets_a_ticket(
    web_app: WebApp, dev_client: Client, browser: Any, tmp_path: Path, providers: ProviderService
) -> None:
    shots = screenshots_dir(tmp_path)
    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    await page.goto(web_app.url + "/")
    await page.get_by_label("Full name").fill("Grace Hopper")
    await page.get_by_label("Hold and let me confirm").check()
    await page.get_by_label("Confirm within (minutes)").fill("10")
    await page.get_by_role("button", name="Book the trip").click()
    await page.wait_for_url(re.compile(r"/bookings/trip-[0-9a-f-]+$"))
    workflow_id = page.url.rsplit("/", 1)[1]

    # Held: the banner counts down in the browser, and nothing is ticketed yet.
    await page.locator("#saga-status", has_text="Awaiting confirmation").wait_for(timeout=60_000)
    countdown = page.locator("#countdown")
    shown = await countdown.inner_text()
    assert re.fullmatch(r"10 min 00 s|9 min \d\d s", shown), shown
    await page.wait_for_function(
        "shown => document.getElementById('countdown').textContent !== shown", arg=shown, timeout=5_000
    )
    # The ticket is a step like the others to the traveller; "pivot" and "compensatable" are operators' words.
    assert await page.locator('tr[data-step="ticket_flight"] .state').inner_text() == "pending"
    assert await page.locator("#steps .kind").count() == 0
    assert await page.locator("#pivot").is_hidden() and await page.locator("#ticket").is_hidden()
    held = sorted(r["kind"] for r in providers.reservations(workflow_id) if r["status"] == "held")
    assert held == ["car", "flight", "hotel"] and providers.active_kinds(workflow_id) == []
    await page.screenshot(path=str(shots / "awaiting-confirmation.png"), full_page=True)

    await page.get_by_label("Note (optional)").fill("price and dates checked")
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await page.locator("#saga-status", has_text="Completed").wait_for(timeout=60_000)
    await page.locator("#ticket").wait_for(state="visible")
    ticket = await page.locator("#ticket-number").inner_text()
    outcome = await await_outcome(dev_client, dev_client.get_workflow_handle(workflow_id))
    assert outcome.status is SagaStatus.COMPLETED and outcome.result is not None
    assert ticket and ticket == outcome.result.ticket
    assert await page.locator("#pivot").is_visible()
    assert "You confirmed this trip." in await page.locator("#decision").inner_text()
    assert await page.locator("#confirmation").count() == 0  # no buttons left to press
    assert providers.active_kinds(workflow_id) == ["car", "flight", "hotel"]


async def test_without_javascript_the_page_refreshes_itself_and_its_forms_work(
    web_app: WebApp, browser: Any, providers: ProviderService
) -> None:
    """Progressive enhancement: no script runs, yet the status shows, follows the run, and Confirm works."""
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if is_poll(request) else None)
    await page.goto(web_app.url + "/")
    await page.get_by_label("Hold and let me confirm").check()
    await page.get_by_role("button", name="Book the trip").click()
    await page.wait_for_url(re.compile(r"/bookings/trip-[0-9a-f-]+$"))
    workflow_id = page.url.rsplit("/", 1)[1]
    # Each state shows as the server drew it; the page's noscript meta refresh reloads it while the run is open.
    await page.locator("#saga-status", has_text="Awaiting confirmation").wait_for(timeout=60_000)
    assert re.fullmatch(r"\d+ min \d\d s", await page.locator("#countdown").inner_text())
    await page.get_by_role("button", name="Confirm", exact=True).click()  # a plain POST, then a redirect
    await page.locator("#saga-status", has_text="Completed").wait_for(timeout=60_000)
    assert await page.locator("#ticket-number").inner_text()
    assert providers.active_kinds(workflow_id) == ["car", "flight", "hotel"]
    # Closed: the refresh is gone with the run (the status reads Completed a moment before the
    # run closes, so the page drawn then may still refresh once more). And no script ever polled.
    await page.locator('meta[http-equiv="refresh"]').wait_for(state="detached", timeout=60_000)
    assert polls == []
    await context.close()


async def test_a_stuck_step_past_the_pivot_is_offered_forward_never_as_an_undo(
    web_app: WebApp, dev_client: Client, providers: ProviderService
) -> None:
    """finalize-hotel-broken, confirmed from the page: the operator sees an unfinished step to retry or settle."""
    # Booked from the form, so this browser is the traveller's and may confirm.
    traveller = Browserless(web_app.url)
    location = traveller.book(
        scenario=Scenario.FINALIZE_HOTEL_BROKEN.value, hold="on", confirm_within_minutes="10", traveller_name="Held"
    )
    await wait_until(
        lambda: traveller.status(location)["status"] == "AWAITING_CONFIRMATION", what="the holds", timeout=60
    )
    confirmed = traveller.http.post(f"{location}/confirm", data={"csrf_token": traveller.csrf(location)})
    assert confirmed.status_code == 303
    # A cancel once confirmed is too late, and the page says so rather than "being undone" ...
    cancelled = traveller.http.post(f"{location}/cancel", data={"csrf_token": traveller.csrf(location)})
    assert cancelled.status_code == 303
    flash = html.unescape(traveller.http.get(location).text)
    assert "Too late to cancel: the trip was already confirmed" in flash and "being undone" not in flash
    # ... and it is what the workflow does: it goes on forward (the hotel is retried, then waits).
    data = await wait_for_attention(traveller, location)
    assert data["past_pivot"] and data["ticket"] and data["outstanding"] == ["finalize_hotel"]
    page = traveller.http.get(location).text
    assert "the flight is ticketed, but some steps could not be finished" in page
    assert "<h2>Unfinished steps</h2>" in page and "Outstanding undos" not in page
    assert re.search(r'<tr data-outstanding="finalize_hotel">.*?ProviderUnavailable', page, re.S)

    operator = Browserless(web_app.url)
    operator.log_in()
    page = operator.http.get(location).text
    assert "Retry: finalize_hotel" in page and "Retry undo" not in page
    # /attention says what it is: a step not finished yet, not a reservation a rollback left held.
    workflow_id = location.rsplit("/", 1)[1]
    await wait_until(
        lambda: workflow_id in operator.http.get("/attention").text, what="/attention to list it", timeout=30
    )
    listing = html.unescape(operator.http.get("/attention").text)
    row = re.search(rf'<tr data-workflow-id="{workflow_id}">.*?</tr>', listing, re.S)
    assert row and "finalize_hotel" in row.group(0) and "not finished yet" in row.group(0)
    assert "still held" not in row.group(0).lower()
    assert "Bookings whose rollback could not undo every reservation" not in listing
    done = operator.http.post(
        f"{location}/resolve",
        data={"csrf_token": operator.csrf(location), "step": "finalize_hotel", "note": "confirmed by phone"},
    )
    assert done.status_code == 303
    final = await poll_until_closed(traveller, location)
    assert final["status"] == "COMPLETED" and final["ticket"] == data["ticket"]


async def test_a_cancel_while_an_operator_is_awaited_past_the_pivot_ends_it_and_the_ticket_stands(
    web_app: WebApp, dev_client: Client, providers: ProviderService
) -> None:
    req = make_request(Scenario.FINALIZE_HOTEL_BROKEN, name="Cancelled Held").model_copy(
        update={"confirm_within": timedelta(minutes=10)}
    )
    handle = await start_booking(dev_client, req, task_queue=web_app.task_queue)
    location = f"/bookings/{handle.id}"
    operator = Browserless(web_app.url)
    operator.log_in()  # started outside the web app: only an operator may answer for it
    await wait_until(
        lambda: operator.status(location)["status"] == "AWAITING_CONFIRMATION", what="the holds", timeout=60
    )
    assert operator.http.post(f"{location}/confirm", data={"csrf_token": operator.csrf(location)}).status_code == 303
    data = await wait_for_attention(operator, location)
    cancelled = operator.http.post(f"{location}/cancel", data={"csrf_token": operator.csrf(location)})
    assert cancelled.status_code == 303
    page = html.unescape(operator.http.get(location).text)
    assert "nothing is undone and the ticket stands" in page and "being undone" not in page
    final = await poll_until_closed(operator, location)
    assert final["status"] == "CANCELLED" and final["ticket"] == data["ticket"]
    # Nothing was undone: the ticketed flight and the confirmed car are still booked.
    assert providers.active_kinds(handle.id) == ["car", "flight"]


async def test_declining_a_held_trip_on_its_page_releases_every_hold(
    web_app: WebApp, providers: ProviderService
) -> None:
    traveller = Browserless(web_app.url)
    location = traveller.book(hold="on", confirm_within_minutes="10")
    workflow_id = location.rsplit("/", 1)[1]
    await wait_until(
        lambda: traveller.status(location)["status"] == "AWAITING_CONFIRMATION", what="the holds", timeout=60
    )
    csrf = traveller.csrf(location)
    declined = traveller.http.post(f"{location}/decline", data={"csrf_token": csrf, "note": "dates changed"})
    assert declined.status_code == 303
    # A second answer is refused by the workflow (or finds the run closed): 409, and it stays declined.
    late = traveller.http.post(f"{location}/confirm", data={"csrf_token": csrf})
    assert late.status_code == 409
    assert action_error(late) in (
        "this booking was already declined: there is nothing to confirm",
        "This trip is no longer waiting for your answer.",
    )
    final = await poll_until_closed(traveller, location)
    assert final["status"] == "ROLLED_BACK" and final["error"]["type"] == "BookingRolledBack"
    assert final["confirmation"]["decision"] == "declined" and final["ticket"] is None
    assert providers.active_kinds(workflow_id) == []
    assert {r["status"] for r in providers.reservations(workflow_id)} == {"cancelled"}
    page = traveller.http.get(location).text
    assert "You declined this trip, so every hold is released." in page and "dates changed" in page


# --- a run closed from outside: its execution status wins over the saga's last state


async def test_browser_terminated_run_says_terminated_and_stops_polling(
    web_app: WebApp, dev_client: Client, browser: Any
) -> None:
    """A run terminated outside the app: its page says Terminated and stops polling."""
    # The hotel keeps failing and retries every 5 s for minutes: the saga stays RUNNING.
    slow_retry = RetryOverrides(initial_interval_s=5, backoff=1.0, max_attempts=50)
    handle = await start_booking(
        dev_client,
        make_request(Scenario.HOTEL_DOWN, retry=slow_retry, name="Terminated Traveller"),
        task_queue=web_app.task_queue,
    )
    location = f"/bookings/{handle.id}"
    user = Browserless(web_app.url)
    await wait_until(lambda: bool(user.status(location)["steps"]), what="the worker to answer the query")

    page = await browser.new_page()
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if is_poll(request) else None)
    await page.goto(web_app.url + location)
    await page.locator("#saga-status", has_text="Running").wait_for()
    await wait_until(lambda: len(polls) >= 2, what="the page to poll while the run is open")  # positive control

    await handle.terminate(reason="test: an operator terminated it")
    await page.locator("#saga-status", has_text="Terminated").wait_for(timeout=30_000)
    await page.locator('#booking[data-polling="stopped"]').wait_for()
    after = len(polls)
    # An absence needs a window: a page on a run still open polling three times is one,
    # counted in polls rather than seconds, so a busy machine cannot shrink it.
    control = await start_booking(
        dev_client, make_request(Scenario.HOTEL_DOWN, retry=slow_retry), task_queue=web_app.task_queue
    )
    control_page = await browser.new_page()
    control_polls: list[str] = []
    control_page.on("request", lambda r: control_polls.append(r.url) if is_poll(r) else None)
    await control_page.goto(f"{web_app.url}/bookings/{control.id}")
    await wait_until(lambda: len(control_polls) >= 3, what="the control page to poll three times")
    await control.terminate(reason="test: the control is done")
    assert len(polls) == after, "the page kept polling a closed run"

    data = user.status(location)
    assert (data["status"], data["closed"], data["temporal_status"]) == ("TERMINATED", True, "TERMINATED")
    assert "Terminated" in user.http.get(location).text

    # The list shows the execution status, not the stale BookingStatus, and the RUNNING filter leaves it out.
    # (Read by id: on the shared dev server the run may be past the list's first page.)
    async def shown() -> str | None:
        [row] = await list_executions(dev_client, f'WorkflowId = "{handle.id}"', limit=1)
        return row.shown_status

    await wait_until(shown, lambda status: status == "TERMINATED", what="the list to show TERMINATED")
    user.log_in()  # started outside the web app: only an operator's list could show it
    assert handle.id not in user.http.get("/bookings?status=RUNNING").text


CSP_RECORDER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


async def test_browser_pages_work_under_the_content_security_policy(web_app: WebApp, browser: Any) -> None:
    page = await browser.new_page()
    await page.add_init_script(CSP_RECORDER)
    await page.goto(web_app.url + "/")
    # Held, the run stays open on its page: htmx has something to poll.
    await page.get_by_label("Hold and let me confirm").check()
    await page.get_by_role("button", name="Book the trip").click()
    await page.wait_for_url(re.compile(r"/bookings/trip-"))
    await page.locator("#saga-status", has_text="Awaiting confirmation").wait_for(timeout=60_000)
    # htmx ran under the policy: a poll's fragment was swapped in (the marker only the swap removes).
    await page.evaluate("document.getElementById('booking').dataset.seen = 'before the swap'")
    await page.locator("#booking:not([data-seen])").wait_for()
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await page.locator("#saga-status", has_text="Completed").wait_for(timeout=60_000)
    await page.locator('#booking[data-polling="stopped"]').wait_for()
    assert await page.evaluate("window.cspViolations") == []
    for path in ("/", "/bookings", "/login"):
        await page.goto(web_app.url + path)
        assert await page.evaluate("window.cspViolations") == [], path
        # The stylesheet applied: the header is laid out by style.css, not the browser's defaults.
        assert await page.evaluate("getComputedStyle(document.querySelector('header.site')).display") == "flex"

    # The policy is enforced: an injected inline script does not run, and is reported.
    await page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        " document.body.append(s); }"
    )
    await page.wait_for_function("window.cspViolations.length > 0")
    assert await page.evaluate("window.injected") is None


def start_web(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``python -m web`` on a free port, as ``make run`` starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_sigterm_finishes_requests_in_flight_then_exits(dev_client: Client, tmp_path: Path) -> None:
    # No worker on this queue: the status query waits out its 3 s timeout, a request in flight.
    handle = await start_booking(dev_client, make_request(), task_queue=f"tq-{uuid.uuid4().hex}")
    # Through a relay, to see when the status request has got as far as calling Temporal.
    relay = FreezableProxy(dev_client.service_client.config.target_host)
    env = dict(
        os.environ,
        TEMPORAL_ADDRESS=relay.address,
        TEMPORAL_NAMESPACE=dev_client.namespace,
        SECRET_KEY=uuid.uuid4().hex,
        OPERATORS_FILE=str(tmp_path / "none.toml"),
        FLASK_QUERY_TIMEOUT="3",
        FLASK_STATUS_TIMEOUT="20",  # a busy machine must not turn the 3 s query into a 503
    )
    proc = start_web(env, "--grace", "20")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("web app listening on "), line
        host, port = line.split()[-1].removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/healthz")  # the server has accepted this connection
        assert conn.getresponse().read() == b'{"status":"ok"}\n'
        sent = relay.sent
        conn.request("GET", f"/bookings/{handle.id}/status")  # its answer takes ~3 s
        # In flight once it calls Temporal: sent, but not yet read, is a race on a busy machine.
        await wait_until(lambda: relay.sent > sent, what="the status request to call Temporal")
        proc.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        await wait_until(refused, what="the server to stop accepting connections")
        response = conn.getresponse()  # the request in flight was finished, not dropped
        assert response.status == 200
        assert "no worker" in json.loads(response.read())["note"]
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None and "stopped" in proc.stderr.read()
    finally:
        stop_process(proc)
        relay.close()
        await handle.terminate()
