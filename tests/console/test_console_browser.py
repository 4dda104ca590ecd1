"""The web console in headless Chromium against a real uvicorn server on 127.0.0.1.

One browser for the module. Analyst, on-call, seller and auditor sign in and walk the main
flows; screenshots go to ``test-output/console/`` (and the incidents list to
``docs/console/incidents.png`` for the README).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from _console_scenario import REPO, Scenario
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from marketguard.app.api import create_app
from marketguard.app.localserver import free_port

pytestmark = pytest.mark.slow

SHOTS = REPO / "test-output" / "console"
DOCS = REPO / "docs" / "console"


@pytest.fixture(scope="module")
def server(seeded: Scenario) -> Iterator[str]:
    """uvicorn serving ``create_app`` (as ``marketguard serve`` does) on a free port."""
    port = free_port()
    config = uvicorn.Config(create_app(seeded.services, manage_lifecycle=False), host="127.0.0.1", port=port,
                            log_level="warning")
    app_server = uvicorn.Server(config)
    thread = threading.Thread(target=app_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not app_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the console server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    app_server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module, with a fresh profile."""
    profile = tempfile.mkdtemp(prefix="mg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.implicitly_wait(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def web(browser: WebDriver, server: str) -> Iterator[Web]:
    """The browser, signed out, at 1280 px."""
    browser.set_window_size(1280, 900)
    browser.get(f"{server}/console/sign-in")
    browser.delete_all_cookies()
    yield Web(browser, server)


class Web:
    """Small helpers over the driver."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.d, self.base = driver, base

    def open(self, path: str) -> None:
        self.d.get(self.base + path)

    def wait(self, condition: object, timeout: float = 10) -> object:
        return WebDriverWait(self.d, timeout).until(condition)

    def submit_and_wait(self, element: object) -> None:
        """Click a submit button and wait for the next page."""
        old = self.d.find_element(By.TAG_NAME, "html")
        element.click()  # type: ignore[attr-defined]
        self.wait(ec.staleness_of(old))

    def sign_in(self, key: str) -> None:
        self.open("/console/sign-in")
        self.d.find_element(By.ID, "api_key").send_keys(key)
        self.submit_and_wait(self.d.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
        assert "/sign-in" not in self.d.current_url, self.text()

    def text(self) -> str:
        return self.d.find_element(By.TAG_NAME, "body").text

    def h1(self) -> str:
        return self.d.find_element(By.TAG_NAME, "h1").text

    def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        assert self.d.save_screenshot(str(path)), name
        return path

    def links(self, selector: str) -> list[str]:
        return [a.get_attribute("href") or "" for a in self.d.find_elements(By.CSS_SELECTOR, selector)]


def test_keyboard_only_sign_in_tab_to_the_form_and_press_enter(web: Web, seeded: Scenario) -> None:
    web.open("/")
    web.wait(ec.url_contains("/console/sign-in"))
    body = web.d.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    first = web.d.switch_to.active_element
    assert first.text == "Skip to main content"
    assert first.rect["y"] >= 0, "the skip link must come into view when focused"
    for _ in range(5):
        if web.d.switch_to.active_element.get_attribute("id") == "api_key":
            break
        web.d.switch_to.active_element.send_keys(Keys.TAB)
    field = web.d.switch_to.active_element
    assert field.get_attribute("id") == "api_key", "the key field is reachable with Tab"
    assert field.value_of_css_property("outline-style") == "solid", "focus is visible"
    field.send_keys(seeded.keys["analyst"])
    old = web.d.find_element(By.TAG_NAME, "html")
    field.send_keys(Keys.ENTER)
    web.wait(ec.staleness_of(old))
    assert web.d.current_url.endswith("/console/incidents") and web.h1() == "Incidents"
    shot = web.shot("incidents-1280")
    if not (DOCS / "incidents.png").exists():  # the README's picture: written once, not on every run
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS / "incidents.png")


def test_analyst_filters_incidents_and_opens_one(web: Web, seeded: Scenario) -> None:
    web.sign_in(seeded.keys["analyst"])
    web.open("/console/incidents")
    rows = web.d.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    assert len(rows) == 3
    badges = [b.text for b in web.d.find_elements(By.CSS_SELECTOR, "table.list .sev")]
    assert sorted(badges) == ["Critical", "High", "Medium"], "severity colours carry a text label"
    Select(web.d.find_element(By.ID, "f-type")).select_by_value("fraud")
    web.submit_and_wait(web.d.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert "type=fraud" in web.d.current_url
    assert web.links("table.list tbody a") == [f"{web.base}/console/incidents/{seeded.incidents['fraud']}"]
    web.shot("incidents-filtered")
    web.open("/console/incidents")
    link = web.d.find_element(By.CSS_SELECTOR, f"a[href='/console/incidents/{seeded.incidents['stuffing']}']")
    web.submit_and_wait(link)
    assert "Credential stuffing on login" in web.h1()
    assert len(web.d.find_elements(By.CSS_SELECTOR, "ol.timeline li")) == len(seeded.services.cases.incident(seeded.incidents["stuffing"]).timeline)
    assert len(web.d.find_elements(By.CSS_SELECTOR, "table.evidence tbody tr")) == 6
    reports = web.links("p.report-links a")
    inc = seeded.incidents["stuffing"]
    assert reports == [f"{web.base}/console/incidents/{inc}/report?format=html", f"{web.base}/console/incidents/{inc}/report?format=pdf"]
    web.shot("incident-detail")


def test_analyst_acknowledges_and_comments_on_a_ticket(web: Web, seeded: Scenario) -> None:
    web.sign_in(seeded.keys["analyst"])
    web.open("/console/tickets")
    ticket = seeded.tickets["secops"]
    web.submit_and_wait(web.d.find_element(By.CSS_SELECTOR, f"a[href='/console/tickets/{ticket}']"))
    web.submit_and_wait(web.d.find_element(By.ID, "acknowledge"))
    assert "Status changed." in web.text()
    assert web.d.find_element(By.CSS_SELECTOR, "dl.facts .state").text == "acknowledged"
    web.d.find_element(By.ID, "comment-text").send_keys("WAF rule drafted; waiting for on-call approval.")
    web.submit_and_wait(web.d.find_element(By.XPATH, "//button[text()='Add comment']"))
    comments = [c.text for c in web.d.find_elements(By.CSS_SELECTOR, ".comment-text")]
    assert comments[-1] == "WAF rule drafted; waiting for on-call approval."
    assert seeded.services.tickets.get(ticket).status == "acknowledged"
    assert not web.d.find_elements(By.XPATH, "//button[text()='Approve']"), "an analyst cannot approve containment"
    web.shot("ticket-acknowledged")


def test_oncall_approves_the_pending_containment(web: Web, seeded: Scenario) -> None:
    web.sign_in(seeded.keys["oncall"])
    web.open("/console/approvals")
    web.d.find_element(By.ID, f"reason-{seeded.action_id}").send_keys("confirmed credential stuffing")
    web.shot("approval-pending")
    web.submit_and_wait(web.d.find_element(By.XPATH, "//button[text()='Approve']"))
    assert "Containment approved." in web.text()
    assert "executed" in web.d.find_element(By.CSS_SELECTOR, "li.action").text
    assert seeded.receiver.posts == ["/contain"]
    web.shot("approval-done")


def test_seller_sees_only_its_own_tickets_and_not_another_sellers_by_url(web: Web, seeded: Scenario) -> None:
    web.sign_in(seeded.keys["acme"])
    assert web.d.current_url.endswith("/console/tickets")
    nav = [a.text for a in web.d.find_elements(By.CSS_SELECTOR, "header nav a")]
    assert nav == ["Tickets", "SLOs & sellers"]
    assert web.links("table.list tbody a") == [f"{web.base}/console/tickets/{seeded.tickets['acme']}"]
    web.shot("seller-tickets")
    web.open(f"/console/tickets/{seeded.tickets['globex']}")
    assert web.h1() == "Not found" and "Support replies overdue" not in web.text()
    web.shot("seller-other-ticket-404")
    web.open(f"/console/tickets/{seeded.tickets['acme']}")
    assert "Card testing through your storefront" in web.h1() and "internal note" not in web.text()


def test_auditor_sees_the_audit_chain_and_cannot_act(web: Web, seeded: Scenario) -> None:
    web.sign_in(seeded.keys["auditor"])
    web.open("/console/audit")
    assert web.d.find_element(By.ID, "verdict-h").text == "Chain intact"
    assert int(web.d.find_element(By.ID, "audit-entries").text) >= 1
    web.shot("audit")
    web.open(f"/console/tickets/{seeded.tickets['secops']}")
    buttons = [b.text for b in web.d.find_elements(By.CSS_SELECTOR, "main button")]
    assert buttons == [] and "can read this ticket but not change it" in web.text()


def test_phone_width_has_no_sideways_scrolling(web: Web, seeded: Scenario) -> None:
    web.sign_in(seeded.keys["oncall"])
    web.d.set_window_size(390, 844)
    try:
        pages = (("/console/incidents", "incidents-390"), (f"/console/tickets/{seeded.tickets['secops']}", "ticket-390"),
                 ("/console/scorecards", "scorecards-390"))
        for path, name in pages:
            web.open(path)
            width = web.d.execute_script("return window.innerWidth")
            scroll = web.d.execute_script("return document.documentElement.scrollWidth")
            assert width <= 400 and scroll <= width, f"{path}: content {scroll}px wide in a {width}px viewport"
            web.shot(name)
        web.open("/console/incidents")
        cell = web.d.find_element(By.CSS_SELECTOR, "table.list td")
        label = web.d.execute_script("return getComputedStyle(arguments[0], '::before').content", cell)
        assert label == '"Severity"', "on a phone each table cell is labelled with its column"
    finally:
        web.d.set_window_size(1280, 900)
