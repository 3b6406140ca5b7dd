"""Opening a tab in the browser tests. With more tabs than fit the bar, Gradio moves the rest into a
"More tabs" menu (on a phone, most of them), where they are plain buttons: open it from there when
the tab's own button is not in the bar."""
from __future__ import annotations


def open_tab(page, title: str, timeout: float = 30_000) -> None:
    page.get_by_role("tab").first.wait_for(timeout=timeout)  # the bar is drawn
    tab = page.get_by_role("tab", name=title, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click(timeout=timeout)
        return
    page.get_by_role("button", name="More tabs").click(timeout=timeout)
    page.locator(".overflow-dropdown").get_by_role("button", name=title, exact=True).click(timeout=timeout)
