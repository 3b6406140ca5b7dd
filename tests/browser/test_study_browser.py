"""A blinded reader study of 10 CT cases x 4 versions, driven in Debian's chromium: the owner
creates it (64 px tiles of the bundled low-dose slices, 10 training iterations per case, so it is
prepared in about a minute on one CPU thread), reader R1 rates 4 cases, the page is reloaded (the
interruption), R1 resumes where they stopped and finishes, reader R2 gets another case order, no
method is named anywhere in the tab before the owner opens the results, which then name them, plot
them and offer the CSV and iMRMC files."""
from __future__ import annotations

import csv
import io
import re
import shutil

import pytest

from tests.browser.tabs import open_tab
from tests.browser.test_browser import CHROMIUM, CHROMIUM_ARGS, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
CASES, VERSIONS, QUESTIONS = 10, 4, 3
# every method's name and key: none may be in the tab before the results are opened
HIDDEN = ("filter2noise", "bilateral", "bm3d", "no denoising", "noisy")
PREPARE_TIMEOUT_MS = 300_000


def open_study_tab(page, url):
    page.goto(url, wait_until="load", timeout=120_000)
    open_tab(page, "Reader study")
    page.locator("#tab-study").wait_for(state="visible")


def status_text(page) -> str:
    return page.locator("#study-status").inner_text()


def wait_status(page, pattern: str) -> str:
    page.wait_for_function(
        "([id, p]) => new RegExp(p).test(document.getElementById(id)?.innerText || '')"
        " || document.querySelector('.toast-body.error') !== null",
        arg=["study-status", pattern], timeout=120_000)
    errors = page.locator(".toast-body.error")
    if errors.count():
        pytest.fail(f"error shown: {errors.first.inner_text()}")
    return status_text(page)


def current_case(page) -> str:
    return re.search(r"case `?([0-9a-f]{16})`?", status_text(page)).group(1)


def assert_blinded(page):
    html = page.locator("#tab-study").inner_html().lower()
    text = page.locator("#tab-study").inner_text().lower()
    for word in HIDDEN:
        assert word not in text and word not in html, f"'{word}' is visible before unblinding"


def start(page, code, reader, expect: str):
    """Open the study as ``reader``; waits for the status line to match ``expect`` (a regex)."""
    page.locator("#study-code textarea, #study-code input").first.fill(code)
    page.locator("#study-reader textarea, #study-reader input").first.fill(reader)
    page.locator("#study-start").click()
    return wait_status(page, expect)


def rate_current(page, seed: int):
    """Answer every question of the case on screen, then save; returns the case just rated."""
    case = current_case(page)
    for i in range(VERSIONS):
        for j in range(QUESTIONS):
            score = 1 + (seed + 2 * i + j) % 5
            page.locator(f"#study-rate-{i}-{j}").get_by_text(str(score), exact=True).click()
    page.locator("#study-prefer").get_by_text("ABCD"[seed % VERSIONS], exact=True).click()
    page.locator("#study-save").click()
    # the next case is on screen (another case hash in a settled status line), or the end
    page.wait_for_function(
        "([id, old]) => { const t = document.getElementById(id)?.innerText || '';"
        " const m = t.match(/Case \\d+ of \\d+ .*case `?([0-9a-f]{16})/);"
        " return (m && m[1] !== old) || t.includes('All cases')"
        " || document.querySelector('.toast-body.error') !== null; }",
        arg=["study-status", case], timeout=120_000)
    errors = page.locator(".toast-body.error")
    if errors.count():
        pytest.fail(f"error shown: {errors.first.inner_text()}")
    return case


def test_a_blinded_study_runs_is_interrupted_resumes_exports_and_summarises(studio_server):
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: the README's test command installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        open_study_tab(page, studio_server)
        assert_blinded(page)

        # the owner creates the study; every version of every case is prepared once, with progress
        page.locator("#study-setup").get_by_text("1. Set up a study").click()
        page.locator("#study-name textarea, #study-name input").first.fill("Browser test study")
        iterations = page.locator("#study-iterations input[type=number]")
        iterations.fill("10")
        iterations.press("Enter")
        page.locator("#study-create").click()
        # progress shows while cases are prepared; on an idle machine it can be over before a poll sees it
        page.wait_for_function("() => document.body.innerText.includes('Preparing case')"
                               " || (document.getElementById('study-create-status')?.innerText || '').includes('Done in')"
                               " || document.querySelector('.toast-body.error') !== null", timeout=60_000)
        page.wait_for_function(
            "() => (document.getElementById('study-create-status')?.innerText || '').includes('Done in')"
            " || document.querySelector('.toast-body.error') !== null", timeout=PREPARE_TIMEOUT_MS)
        created = page.locator("#study-create-status").inner_text()
        assert "10 cases x 4 versions" in created and "trains 10 iterations" in created, created
        code = re.search(r"readers: ([0-9a-f]{10})", created).group(1)
        owner_key = re.search(r"shown once\): (\S+) ", created).group(1)
        assert_blinded(page)

        # reader R1: four cases, then the page is reloaded mid-study
        start(page, code, "R1", r"Case 1 of 10 \(0 rated so far")
        for i in range(VERSIONS):
            page.locator(f"#study-image-{i} img").wait_for(state="visible", timeout=30_000)
        labels = [page.locator(f"#study-image-{i}").inner_text().strip() for i in range(VERSIONS)]
        assert labels == list("ABCD"), labels
        r1 = [rate_current(page, seed) for seed in range(4)]
        assert_blinded(page)
        screenshot(page, "study-reading")
        page.reload(wait_until="load")
        open_study_tab(page, studio_server)
        start(page, code, "R1", r"Case 5 of 10 \(4 rated so far")
        assert current_case(page) not in r1
        r1 += [rate_current(page, seed) for seed in range(4, CASES)]
        assert "All cases of this study are rated" in status_text(page)
        assert len(set(r1)) == CASES

        # reader R2 starts at the beginning of another order
        start(page, code, "R2", r"Case 1 of 10 \(0 rated so far")
        # one image at a time, flipped by letter, then back to side by side
        page.locator("#study-view").get_by_text("One at a time", exact=True).click()
        page.locator("#study-single img").wait_for(state="visible")
        assert not page.locator("#study-image-0").is_visible()
        page.locator("#study-flip").get_by_text("C", exact=True).click()
        page.wait_for_function("() => (document.getElementById('study-single')?.innerText || '').includes('C')")
        page.locator("#study-view").get_by_text("Side by side", exact=True).click()
        page.locator("#study-image-3 img").wait_for(state="visible")
        width = page.locator("#study-image-0 img").evaluate("img => img.naturalWidth")
        assert width >= 192, f"a 64 px case is shown {width} px wide"
        # another window redraws every image and keeps what was already ticked
        page.locator("#study-rate-0-0").get_by_text("3", exact=True).click()
        before = page.locator("#study-image-0 img").get_attribute("src")
        page.locator("#study-window input").click()
        page.get_by_role("option", name="Lung (W1500 / L-600)").click()
        page.wait_for_function("old => document.querySelector('#study-image-0 img')?.src !== old", arg=before,
                               timeout=60_000)
        assert page.locator("#study-rate-0-0 input:checked").count() == 1
        r2 = [rate_current(page, seed) for seed in range(3)]
        assert r2 != r1[:3], "two readers got the same case order"
        assert_blinded(page)

        # the owner opens the results: the only place the methods are named
        page.locator("#study-results").get_by_text("3. Results").click()
        page.locator("#study-owner-code textarea, #study-owner-code input").first.fill(code)
        page.locator("#study-owner-key input, #study-owner-key textarea").first.fill(owner_key)
        page.locator("#study-results-run").click()
        page.wait_for_function(
            "() => (document.getElementById('study-summary')?.innerText || '').includes('Done in')"
            " || document.querySelector('.toast-body.error') !== null", timeout=60_000)
        summary = page.locator("#study-summary").inner_text()
        assert "2 reader(s), 10 case(s) rated" in summary, summary
        for name in ("Filter2Noise", "BM3D", "OpenCV bilateral", "Low-dose input"):
            assert name in summary
        assert "Win rate (preferred)" in summary and "Mean rating: Noise" in summary
        page.locator("#study-plot img").wait_for(state="visible")
        links = page.locator("#study-downloads a")
        links.first.wait_for(state="attached", timeout=30_000)
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        assert sum(h.endswith(".imrmc") for h in hrefs) == QUESTIONS + 1 and sum(h.endswith(".csv") for h in hrefs) == 1, hrefs
        rows = list(csv.DictReader(io.StringIO(page.request.get(next(h for h in hrefs if h.endswith(".csv"))).text())))
        imrmc = page.request.get(next(h for h in hrefs if h.endswith("_preference.imrmc"))).text()
        assert "\nNR: 2\nNM: 4\nBEGIN DATA:\n" in imrmc
        data = imrmc.split("BEGIN DATA:\n")[1].splitlines()
        assert len(data) == (CASES + 3) * VERSIONS and all(len(line.split(",")) == 4 for line in data)
        assert len(rows) == (CASES + 3) * VERSIONS * (QUESTIONS + 1)
        assert {r["reader_id"] for r in rows} == {"R1", "R2"} and {r["case"] for r in rows} == set(r1)
        screenshot(page, "study-results")
        # at phone width the results and a case still fit without sideways scrolling
        page.set_viewport_size({"width": 390, "height": 900})
        page.wait_for_timeout(500)
        overflow = page.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= 400, f"the page is {overflow} px wide at a 390 px viewport"
        screenshot(page, "study-phone")
        browser.close()
