"""A real Chromium (Debian's, /usr/bin/chromium) driven by Playwright against a live server.

A failing browser test saves a screenshot to var/screenshots/<test name>.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LLMHIVE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "a-long-browser-password-1"


def chromium_path() -> str | None:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")


# Module scope, not session: while Playwright's sync API is open its event loop counts as
# running in this thread, and asyncio.run() in any later test would fail. Closing it when
# the module's tests are done gives the thread back.
@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; bin/test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make
    # around it are still plain synchronous calls. Only while the browser is open: a process
    # started later (check --deploy) must not inherit the switch.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        page = item.funcargs.get("page")
        if page is not None:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            target = SCREENSHOTS / f"{item.name}.png"
            try:
                page.screenshot(path=str(target), full_page=True)
                report.sections.append(("screenshot", str(target)))
            except Exception as exc:  # the page may be gone with the failure
                report.sections.append(("screenshot", f"could not save: {exc}"))


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def login(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def messages(page) -> str:
    """The admin's message list on the page a click led to, read once the page is whole.

    A click returns once the next page has started to arrive; read at once, the list can be
    caught before its items are parsed and read as empty."""
    page.wait_for_load_state()
    return page.locator("ul.messagelist").inner_text()
