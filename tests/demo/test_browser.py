"""The live page in a real headless Chromium (Debian's, driven by Playwright; no download).

- Two pages on one room, each in its own browser context: a message posted in one shows up
  in the other; the countdown runs to its end and the server clock ticks; invalid input
  shows the GraphQL error. Against channelserver and Daphne.
- A server restart: channelserver stops (SIGTERM: open WebSockets are closed with 1012),
  a new process comes up on the same port, and the page reconnects and re-subscribes by
  itself (its hand-written graphql-transport-ws client), showing messages posted since.

Screenshots go to ``test-output/demo/``; with ``DEMO_UPDATE_DOCS_SCREENSHOT=1`` the chat
one is also copied to ``docs/demo.png`` (the picture in docs/demo.md).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, ServerProcess

from .clients import data
from .conftest import fresh_db, require_executable, start_demo

OUTPUT = ROOT / "test-output" / "demo"
#: Generous: the machine may be busy with other suites; every wait here ends on an event.
TIMEOUT_MS = 20_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POST = """mutation Post($room: String!, $text: String!) {
  postMessage(room: $room, text: $text, author: "server-side") { id } }"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_executable("chromium", "/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class Page:
    """One browser context with the demo page open, recording the page's script errors."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 640})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)
        self.page.wait_for_selector("#messages[data-ready=true]")
        self.page.wait_for_selector('#status[data-state="connected"]')

    def ticks(self) -> int:
        return int(self.page.get_attribute("#clock", "data-ticks") or 0)

    def wait_for_ticks(self, at_least: int) -> None:
        self.page.wait_for_function(f"Number(document.querySelector('#clock').dataset.ticks) >= {at_least}")

    def wait_for_message(self, text: str) -> None:
        self.page.locator("#messages li .text", has_text=text).wait_for()

    def post(self, text: str) -> None:
        self.page.fill("#text", text)
        self.page.click("#post-form button")

    def screenshot(self, name: str) -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / name
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        assert self.errors == [], f"script errors on the page: {self.errors}"
        self.context.close()


@pytest.mark.parity
def test_two_pages_chat_count_down_and_tick(browser: Any, demo_server: ServerProcess) -> None:
    kind = demo_server.kind  # type: ignore[attr-defined]
    url = f"{demo_server.url}/#random"
    alice, bob = Page(browser, url), Page(browser, url)
    try:
        alice.page.fill("#author", "alice")
        bob.page.fill("#author", "bob")
        text = f"hello from a real browser ({kind})"
        alice.post(text)
        bob.wait_for_message(text)
        alice.wait_for_message(text)
        # The form cleared after the mutation succeeded; invalid input shows the GraphQL error.
        assert alice.page.input_value("#text") == ""
        bob.post("   ")
        bob.page.wait_for_selector("#post-error:not([hidden])")
        assert bob.page.inner_text("#post-error") == "Message text must not be empty."
        # A finite subscription runs to its end; the endless clock keeps ticking.
        alice.page.fill("#countdown-from", "2")
        alice.page.click("#countdown-form button")
        alice.page.wait_for_selector('#countdown-value[data-state="done"]')
        assert alice.page.inner_text("#countdown-value") == "liftoff"
        bob.wait_for_ticks(bob.ticks() + 1)
        bob.post("the server clock is ticking")
        alice.wait_for_message("the server clock is ticking")
        shot = alice.screenshot(f"chat-{kind}.png")
        if kind == "channelserver" and os.environ.get("DEMO_UPDATE_DOCS_SCREENSHOT") == "1":
            shutil.copyfile(shot, ROOT / "docs" / "demo.png")
    finally:
        alice.close()
        bob.close()


def test_page_reconnects_and_resubscribes_after_a_restart(browser: Any, template_db: Path, tmp_path: Path) -> None:
    db = fresh_db(template_db, tmp_path)
    # The page's subscriptions are endless: the drain-aware consumer holds them open until
    # graceful_timeout, then closes with 1012.
    with start_demo("channelserver", db, "--graceful-timeout", "1") as first:
        page = Page(browser, f"{first.url}/#lobby")
        try:
            first_pid = page.page.inner_text("#server")
            # A deploy: SIGTERM; channelserver closes the page's WebSocket with 1012 and exits.
            assert first.stop(signal.SIGTERM) == 0
            page.page.wait_for_function(
                "(document.querySelector('#status').dataset.closeCodes || '').startsWith('1012')"
            )
            # The new process binds the same address (SO_REUSEADDR), as a restarted service would.
            with start_demo("channelserver", db, "--port", str(first.port), "--graceful-timeout", "1") as second:
                # Posted while the page may still be reconnecting: it must show up either way
                # (through the re-subscribed `messages` or the history reloaded on reconnect).
                data(second.url, POST, {"room": "lobby", "text": "posted during the restart"})
                page.page.wait_for_selector('#status[data-state="connected"][data-reconnects="1"]')
                page.wait_for_message("posted during the restart")
                data(second.url, POST, {"room": "lobby", "text": "posted after the restart"})
                page.wait_for_message("posted after the restart")
                page.wait_for_ticks(page.ticks() + 1)
                page.page.wait_for_function(
                    f"!['', {first_pid!r}].includes(document.querySelector('#server').textContent)"
                )
                page.screenshot("reconnected.png")
        finally:
            page.close()
