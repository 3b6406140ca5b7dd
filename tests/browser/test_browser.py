"""Drives the studio in Debian's chromium: every tab opens, its first example runs, the result
shows, and a screenshot per tab lands in test-artifacts/screenshots/."""
from __future__ import annotations

import shutil

import pytest

import tabs
from tests.browser.tabs import open_tab
from tests.conftest import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
RUN_TIMEOUT_MS = 240_000

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def page(studio_server):
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: the README's test command installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Not "networkidle": Gradio keeps a connection open; the tab list showing means it rendered.
        page.goto(studio_server, wait_until="load", timeout=120_000)
        page.get_by_role("tab", name="About", exact=True).wait_for(timeout=120_000)
        yield page
        browser.close()


def screenshot(page, key: str) -> None:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{key}.png"), full_page=True)
    assert (folder / f"{key}.png").stat().st_size > 10_000


def assert_no_error_toast(page, key: str) -> None:
    toasts = page.locator(".toast-body.error, [data-testid='toast-body'].error")
    if toasts.count():
        pytest.fail(f"{key}: error shown: {toasts.first.inner_text()}")


@pytest.mark.parametrize("module", tabs.registered_tabs(), ids=lambda m: m.INFO.key)
def test_tab_runs_its_first_example(page, module):
    info = module.INFO
    if info.key == "study":
        pytest.skip("the reader study has a browser test of its own (tests/browser/test_study_browser.py)")
    open_tab(page, info.title)
    panel = page.locator(f"#tab-{info.key}")
    panel.wait_for(state="visible")
    if info.key == "about":
        tables = page.locator("#about-table table")
        tables.first.wait_for(state="visible")
        assert tables.count() == 2
        for i in range(2):
            assert tables.nth(i).locator("tbody tr").count() == len(tabs.model_tabs())
        screenshot(page, info.key)
        return
    status = page.locator(f"#{info.key}-status")
    examples = page.locator(f"#{info.key}-examples").locator(".gallery-item, tbody tr")
    for attempt in range(2):
        examples.first.click()
        page.wait_for_timeout(500 + 2500 * attempt)
        page.locator(f"#{info.key}-run").click()
        # a result or an error, whichever comes first: an error should fail in seconds, not minutes
        page.wait_for_function(
            "id => (document.getElementById(id)?.innerText || '').includes('Done in')"
            " || document.querySelector('.toast-body.error') !== null",
            arg=f"{info.key}-status", timeout=RUN_TIMEOUT_MS,
        )
        if "Done in" in status.inner_text():
            break
        message = page.locator(".toast-body.error").first.inner_text()
        # On a loaded machine the click on Run can beat the example's values to the browser: the
        # tab then rightly says its input is missing. Only that case gets one more (slower) try.
        missing_input = any(word in message.lower() for word in ("no image", "upload", "empty"))
        if attempt or not missing_input:
            pytest.fail(f"{info.key}: error shown: {message}")
        for close in page.locator(".toast-close").all():
            close.click()
        page.locator(".toast-body.error").first.wait_for(state="detached", timeout=10_000)
    assert "Done in" in status.inner_text()
    assert_no_error_toast(page, info.key)
    result_selector = info.browser_result
    if result_selector:
        result = page.locator(result_selector).first
        result.wait_for(state="visible", timeout=60_000)
        if result.evaluate("el => el.tagName") == "VIDEO":
            # A video that plays: the browser decoded it (readyState >= 2) and knows its length.
            page.wait_for_function(
                "sel => { const v = document.querySelector(sel); return v && v.readyState >= 2 && v.duration > 0; }",
                arg=result_selector, timeout=60_000,
            )
    screenshot(page, info.key)
