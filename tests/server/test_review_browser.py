"""The review page in a real browser: headless Chromium (Debian's) driven by Selenium.

TestClient proves the HTML and the handlers; this proves a reviewer can actually use the
page: the login form posts and the cookie sticks (HttpOnly, SameSite=Strict, path
/review), the strict Content-Security-Policy still lets the page render and its forms
submit, the blurred thumbnail loads, and clicking Approve records the verdict with the
reviewer's name and the time. The queued item is a synthetic grey checkerboard that the
fake detector scores as nudity under the ``reviewing`` policy (benign content).

Needs ``apt-get install chromium chromium-driver`` and ``pip install selenium``; skipped
otherwise. Selenium is pointed at /usr/bin/chromedriver so it never downloads a driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from genguard.server.app import create_app
from tests.server.conftest import auth, fake_guards, make_config
from tests.server.test_auditlog_review import checkerboard
from tests.server.test_live import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ADMIN = "admin-token-for-the-browser-0123456789"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
]


def _missing_browser() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium with a throwaway profile, from Debian's packages only."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def review_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Any]]:
    """A live loopback gateway that stores content (so the page shows thumbnails)."""
    config = make_config(
        tmp_path,
        review={"admin_token": ADMIN},
        store={"store_content": True, "content_key": Fernet.generate_key().decode()},
    )
    app = create_app(config, guards=fake_guards())
    server = LiveServer(app)
    try:
        yield server, app.state.gateway
    finally:
        server.stop()


def queue_an_item(server: LiveServer, gateway: Any) -> int:
    """Upload the synthetic image under the reviewing policy; it lands in the queue."""
    import httpx

    key = gateway.keys.create("uploader", "reviewing", "100/min")[1]
    response = httpx.post(
        f"{server.url}/v1/moderate/image", headers=auth(key), content=checkerboard(), timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["decision"]["action"] == "review"
    return int(response.json()["audit_id"])


def test_reviewer_logs_in_and_approves_by_clicking(
    browser: Any, review_server: tuple[LiveServer, Any], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server, gateway = review_server
    audit_id = queue_an_item(server, gateway)
    wait = WebDriverWait(browser, 20)

    browser.get(f"{server.url}/review")
    browser.find_element(By.NAME, "reviewer").send_keys("alice")
    browser.find_element(By.NAME, "token").send_keys(ADMIN)
    browser.find_element(By.CSS_SELECTOR, "form[action='/review/login'] button").click()

    item = wait.until(ec.presence_of_element_located((By.ID, f"item-{audit_id}")))
    assert "uploader" in item.text and "nudity" in item.text
    assert "0.90" in item.text  # the score the page shows is the recorded one
    # The blurred thumbnail actually loaded (CSP allows same-origin images).
    thumb = item.find_element(By.CSS_SELECTOR, "img.thumb")
    wait.until(lambda _d: browser.execute_script("return arguments[0].naturalWidth", thumb) > 0)
    assert browser.execute_script("return arguments[0].naturalWidth", thumb) <= 192
    # The session cookie is HttpOnly: page scripts cannot read it.
    assert "genguard_review" not in browser.execute_script("return document.cookie")
    browser.save_screenshot(str(tmp_path / "review-queue.png"))

    item.find_element(By.NAME, "note").send_keys("checked: synthetic test image")
    before = datetime.now(UTC).replace(tzinfo=None)
    item.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait.until(ec.staleness_of(item))
    wait.until(ec.presence_of_element_located((By.XPATH, "//h2[text()='Recently decided']")))
    after = datetime.now(UTC).replace(tzinfo=None)
    browser.save_screenshot(str(tmp_path / "review-decided.png"))

    assert not browser.find_elements(By.ID, f"item-{audit_id}")
    assert "Nothing to review." in browser.page_source
    decided_row = browser.find_element(By.XPATH, f"//td[text()='#{audit_id}']/..").text
    assert "approved" in decided_row and "alice" in decided_row

    record = gateway.audit.get(audit_id)
    assert (record.review_status, record.reviewer) == ("approved", "alice")
    assert record.review_note == "checked: synthetic test image"
    reviewed_at = record.reviewed_at.replace(tzinfo=None)  # stored as naive UTC on SQLite
    assert before.replace(microsecond=0) <= reviewed_at <= after
