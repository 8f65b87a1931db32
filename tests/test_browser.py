"""A real browser: headless Chromium (Debian's ``chromium``, driven by playwright) opens the chat
example's page in two tabs that talk to each other, and saves a screenshot.

``.ci/run`` installs Debian's chromium; playwright only drives it (never ``playwright install``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import free_port
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where the screenshot goes (CI keeps the build directory as its artefacts).
SCREENSHOT = Path(os.environ.get("TRIO_WS_SCREENSHOT_DIR", ROOT / "build")) / "chat-two-tabs.png"


def test_two_browser_tabs_chat_through_the_example() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "chat.py"), "--port", str(port)], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        assert f"http://127.0.0.1:{port}/".encode() in server.stdout.readline()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            context = browser.new_context(viewport={"width": 800, "height": 600})
            alice, bob = context.new_page(), context.new_page()
            for page, name in ((alice, "alice"), (bob, "bob")):
                page.goto(f"http://127.0.0.1:{port}/?room=garden&name={name}")
                expect(page.locator("#status")).to_have_attribute("data-state", "open")
                # The browser offered permessage-deflate and the server accepted it.
                expect(page.locator("#status")).to_contain_text("permessage-deflate")
            say(alice, "Hello from Alice's tab")
            expect(bob.locator("#log")).to_contain_text("alice: Hello from Alice's tab")
            say(bob, "Hi Alice, Bob here")
            for page in (alice, bob):
                expect(page.locator("#log")).to_contain_text("alice: Hello from Alice's tab")
                expect(page.locator("#log")).to_contain_text("bob: Hi Alice, Bob here")
            expect(alice.locator("#log")).to_contain_text("bob joined garden")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            alice.screenshot(path=str(SCREENSHOT))
            assert SCREENSHOT.stat().st_size > 10_000
            bob.close()  # the other tab sees bob leave
            expect(alice.locator("#log")).to_contain_text("bob left")
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=15) == 0
        if server.stdout is not None:
            server.stdout.close()


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")
