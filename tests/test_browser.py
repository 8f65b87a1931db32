"""A real browser: headless Chromium (Debian's ``chromium``, driven by playwright) opens the chat
example's page in two tabs that talk to each other, and saves a screenshot; the page reconnects by
itself after the server restarts, with the text being typed still there; room names with ``/``; with
two processes sharing rooms through Redis, a page recovers what it missed, a reloaded one shows the
room's history, and the pages list who is in the room.

``.ci/run`` installs Debian's chromium; playwright only drives it (never ``playwright install``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
#: The screenshots of the reconnection and room tests.
ARTIFACTS = Path(os.environ.get("TRIO_WS_ARTIFACTS_DIR", ROOT / "tests" / "artifacts"))
#: Collects every text the status line shows (a state may last less than a poll of ``expect``).
WATCH_STATUS = """
window.statuses = [];
const status = document.getElementById("status");
new MutationObserver(() => window.statuses.push(status.textContent))
  .observe(status, {childList: true, characterData: true, subtree: true});
"""


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


@contextmanager
def chat_server(port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``examples/chat.py`` on ``port``, once it listens; stopped with SIGINT (exit status 0)."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "chat.py"), "--port", str(port), *args],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        assert f"http://127.0.0.1:{port}/".encode() in server.stdout.readline()
        yield server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        assert server.wait(timeout=15) == 0
        if server.stdout is not None:
            server.stdout.close()


def test_the_chat_page_reconnects_after_a_server_restart_and_keeps_the_typed_text() -> None:
    port = free_port()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 800, "height": 600})
        answers: list[tuple[str, int]] = []
        page.on("response", lambda response: answers.append((response.url, response.status)))
        with chat_server(port) as server:
            page.goto(f"http://127.0.0.1:{port}/?room=garden&name=alice")
            expect(page.locator("#status")).to_have_attribute("data-state", "open")
            page.evaluate(WATCH_STATUS)
            page.fill("#text", "typed while the server restarts")
            server.send_signal(signal.SIGINT)  # graceful: close 1001
            expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
            expect(page.locator("#log")).to_contain_text("disconnected: server restarting (1001)")
            assert server.wait(timeout=15) == 0
        page.press("#text", "Enter")  # while away: the text stays, with a word why
        expect(page.locator("#note")).to_contain_text("Not connected")
        with chat_server(port):  # the same port, a new process
            expect(page.locator("#status")).to_have_attribute("data-state", "open", timeout=30_000)
            assert page.input_value("#text") == "typed while the server restarts"
            statuses = page.evaluate("window.statuses")
            assert any("server restarting (1001); reconnecting in" in text for text in statuses), statuses
            expect(page.locator("#note")).to_have_text("")
            page.press("#text", "Enter")
            expect(page.locator("#log")).to_contain_text("alice: typed while the server restarts")
            assert page.input_value("#text") == ""
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "chat-reconnected.png"))
        assert not [answer for answer in answers if answer[1] == 426], answers  # the icon too
        browser.close()


def test_the_chat_page_takes_room_names_with_a_slash_and_says_a_message_is_too_long() -> None:
    port = free_port()
    with chat_server(port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 800, "height": 600})
        alice, bob = context.new_page(), context.new_page()
        alice.goto(f"http://127.0.0.1:{port}/?room=team%2Fdesign&name=alice")
        bob.goto(f"http://127.0.0.1:{port}/?room=team&name=bob")
        for page in (alice, bob):
            expect(page.locator("#status")).to_have_attribute("data-state", "open")
        expect(alice.locator("h1")).to_have_text("Room team/design")
        expect(alice.locator("#log")).to_contain_text("alice joined team/design")
        say(bob, "only in team")
        say(alice, "only in team/design")
        expect(alice.locator("#log")).to_contain_text("alice: only in team/design")
        expect(bob.locator("#log")).to_contain_text("bob: only in team")
        assert "only in team/design" not in bob.locator("#log").inner_text()
        assert "bob:" not in alice.locator("#log").inner_text()
        too_long = "x" * 2001
        say(alice, too_long)
        expect(alice.locator("#note")).to_contain_text("Too long: 2001 characters, at most 2000")
        assert alice.input_value("#text") == too_long  # not sent, not cut, not lost
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        alice.screenshot(path=str(ARTIFACTS / "chat-room-with-a-slash.png"))
        browser.close()


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of the test's own (no persistence) on a free port: its URL."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        while b"Ready to accept connections" not in (line := process.stdout.readline()):
            assert line, "redis-server exited"
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_the_chat_page_lists_members_recovers_what_it_missed_and_shows_the_history_on_reload() -> None:
    """Two chat processes sharing rooms through Redis: a page whose process restarts reconnects with
    the position of the last message it showed and gets exactly what was said meanwhile on the other
    process; a reloaded page shows the room's latest messages; the pages list who is in the room."""
    a, b = free_port(), free_port()
    with redis_server() as redis, chat_server(b, "--redis", redis), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 800, "height": 600})
        alice, bob = context.new_page(), context.new_page()
        with chat_server(a, "--redis", redis) as server:
            alice.goto(f"http://127.0.0.1:{a}/?room=garden&name=alice")
            expect(alice.locator("#status")).to_have_attribute("data-state", "open")
            bob.goto(f"http://127.0.0.1:{b}/?room=garden&name=bob")
            expect(bob.locator("#status")).to_have_attribute("data-state", "open")
            for page in (alice, bob):  # across the two processes
                expect(page.locator("#who")).to_have_text("In the room (2): alice, bob")
            say(alice, "said before the restart")
            expect(bob.locator("#log")).to_contain_text("alice: said before the restart")
            server.send_signal(signal.SIGINT)
            expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting")
            expect(bob.locator("#log")).to_contain_text("alice left")
            expect(bob.locator("#who")).to_have_text("In the room (1): bob")
            assert server.wait(timeout=15) == 0
        say(bob, "missed one")
        say(bob, "missed two")
        expect(bob.locator("#log")).to_contain_text("bob: missed two")
        with chat_server(a, "--redis", redis):  # alice's process is back, on the same port
            expect(alice.locator("#status")).to_have_attribute("data-state", "open", timeout=30_000)
            for text in ("alice: said before the restart", "bob: missed one", "bob: missed two"):
                expect(alice.locator("#log p", has_text=text)).to_have_count(1)  # once: no gap, no repeat
            expect(alice.locator("#who")).to_have_text("In the room (2): alice, bob")
            say(bob, "live again")
            expect(alice.locator("#log p", has_text="bob: live again")).to_have_count(1)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            alice.screenshot(path=str(ARTIFACTS / "chat-recovered.png"))
            alice.reload()  # a new page: the room's latest messages
            expect(alice.locator("#status")).to_have_attribute("data-state", "open")
            log = alice.locator("#log p")
            expect(log.filter(has_text="bob: live again")).to_have_count(1)
            texts = [text for text in log.all_inner_texts() if ": " in text]
            assert texts == [
                "alice: said before the restart",
                "bob: missed one",
                "bob: missed two",
                "bob: live again",
            ], texts
        browser.close()


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")
