"""The console, as an operator uses it: Debian's Chromium (through Playwright) on a real
stack (supervisord, Gunicorn, the listener) against the real LocalStack.

Playwright launches /usr/bin/chromium (`make browser`) and never downloads a browser.
Screenshots go to var/artifacts/ (console.png is the README's).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from harness.waiting import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "artifacts"
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("BOOKD_CHROMIUM", "/usr/bin/chromium")
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
TOKEN = "console-test-token"
BOOK = {"id": "c1", "title": "Seen on the console", "author": "A", "year": "2001"}
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make browser` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator:
    """Open pages in fresh contexts; each page's console errors go to its ``problems``."""
    contexts = []

    def open_(url: str, **options) -> Page:
        options.setdefault("viewport", VIEWPORTS["desktop"])
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.problems = []  # type: ignore[attr-defined]
        page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
        page.on("pageerror", lambda error: page.problems.append(f"uncaught: {error}"))
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()


def badge(page: Page):
    return page.locator("#now .badge.big")


def enter_token(page: Page, token: str) -> None:
    field = page.get_by_label("Control token")
    field.fill(token)
    field.blur()  # the page asks bookd at once whether the token is good


def bookd(stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bookd", *args],
        env=stack.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def axe_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_the_page_shows_the_running_listener_readably_everywhere(make_stack, open_page):
    stack = make_stack()
    page = open_page(stack.url)
    # The first paint is the server's, and names the host, for one tab per instance.
    assert page.title() == f"bookd on {socket.gethostname()}"
    expect(badge(page)).to_have_text("running")
    expect(page.locator('[data-list="dependencies"] [data-key="s3"] .badge')).to_have_text("ok")
    # The queues' depths come with the listener's first read of them (every 5 s).
    queues = page.locator('[data-list="queues"] [data-key="input"]')
    expect(queues).to_contain_text("Input.fifo", timeout=10_000)
    expect(page.locator("#poll-error")).to_have_text("")
    page.wait_for_timeout(3000)  # a poll or more, whose rendering must not fail either
    assert page.problems == []
    # Readable on a phone and in the dark, and by assistive technology.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console.png", full_page=True)
    found = {}
    for scheme in ("light", "dark"):
        for view, size in VIEWPORTS.items():
            phone = view == "phone"
            # bypass_csp: axe goes in as a script of the test's, which the page's CSP refuses.
            shown = open_page(
                stack.url, viewport=size, is_mobile=phone, has_touch=phone, bypass_csp=True
            )
            shown.emulate_media(color_scheme=scheme)
            expect(badge(shown)).to_have_text("running")
            found[scheme, view] = axe_violations(shown)
            scroll, inner, layout = shown.evaluate(
                "[document.scrollingElement.scrollWidth, innerWidth,"
                " document.documentElement.clientWidth]"
            )
            assert scroll <= min(inner, layout, size["width"]), f"{view} scrolls sideways"
            shown.screenshot(path=ARTIFACTS / f"console-{scheme}-{view}.png", full_page=True)
    assert {key: v for key, v in found.items() if v} == {}


def test_without_javascript_the_server_rendered_page_shows_the_state(make_stack, open_page):
    stack = make_stack()
    page = open_page(stack.url, java_script_enabled=False)
    expect(badge(page)).to_have_text("running")
    expect(page.locator(".no-js-note")).to_be_visible()
    # Every other client keeps the JSON of GET /.
    assert requests.get(stack.url + "/", timeout=5).json()["listener"]["state"] == "running"


def test_a_book_sent_with_bookd_send_shows_on_the_page_within_5_s(make_stack, open_page):
    stack = make_stack()
    page = open_page(stack.url)
    stored = page.locator('[data-bind="messages.uploaded"]')
    expect(stored).to_have_text("0")
    bookd(stack, "send", "-", stdin=json.dumps({**BOOK, "genre": "scifi"}))
    sent_at = time.monotonic()
    expect(stored).to_have_text("1", timeout=5000)
    assert time.monotonic() - sent_at <= 5
    assert page.problems == []


def test_stopping_from_the_page_needs_the_token(make_stack, open_page):
    stack = make_stack(BOOKD_CONTROL_TOKEN=TOKEN)
    page = open_page(stack.url)
    stop = page.get_by_role("button", name="Stop listener")
    # Without the token the controls are off, say why, and bookd refuses the request.
    expect(page.locator("#control-why")).to_contain_text("enter the control token")
    expect(stop).to_be_disabled()
    status = page.evaluate("fetch('./', {method: 'DELETE'}).then(r => r.status)")
    assert status == 401
    page.problems.remove(  # the browser reports the refusal this test asked for
        "Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"
    )
    enter_token(page, "not-the-token")
    expect(page.locator("#control-why")).to_contain_text("did not accept this token")
    expect(stop).to_be_disabled()
    time.sleep(1.5)  # a Keeper's check: a stop that got through would show by now
    assert stack.listener_state() == "running"
    # With it, Stop stops the listener, and Start starts it again.
    enter_token(page, TOKEN)
    expect(stop).to_be_enabled()
    stop.click()
    expect(page.locator("#control-message")).to_contain_text("Stop accepted")
    expect(badge(page)).to_have_text("stopped", timeout=10_000)
    assert stack.listener_state() == "stopped"
    page.get_by_role("button", name="Start listener").click()
    expect(badge(page)).to_have_text("running", timeout=15_000)
    assert page.problems == []


def test_a_dead_letter_shows_under_its_reason_and_the_redrive_button_moves_it_once(
    make_stack, open_page
):
    stack = make_stack()
    page = open_page(stack.url)
    bookd(stack, "send", "-", stdin="not json")
    reason = page.locator('.reason[data-key="invalid-json"]')
    expect(reason.locator('[data-field="count"]')).to_have_text("1", timeout=10_000)
    expect(reason).to_contain_text("body is not JSON")
    failed = page.locator('[data-bind="messages.failed"]')
    expect(failed).to_have_text("1")
    # A dry run first, then the move.
    reason.get_by_role("button", name="Redrive invalid-json").click()
    expect(reason.locator(".plan")).to_have_text(
        "Would move 1 dead letter back to the input queue."
    )
    reason.get_by_role("button", name="Move 1").click()
    expect(page.locator("#redrive-message")).to_contain_text("Moved 1 dead letter of invalid-json")
    # Still invalid, it is dead-lettered again, once: moved once, not over and over.
    expect(failed).to_have_text("2", timeout=10_000)
    time.sleep(3)
    expect(failed).to_have_text("2")
    expect(reason.locator('[data-field="count"]')).to_have_text("1", timeout=10_000)
    assert page.problems == []


class _Attacker(BaseHTTPRequestHandler):
    """A page of another site that tries to steer bookd through the operator's browser."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        page = f"""<!doctype html><title>elsewhere</title>
<form id="f" method="post" action="{self.target}/"></form>
<script>
fetch("{self.target}/", {{method: "POST", mode: "no-cors"}});
fetch("{self.target}/dead-letters/redrive", {{method: "POST", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"dry_run": false}}'}});
fetch("{self.target}/", {{method: "DELETE"}}).catch(() => {{}});
setTimeout(() => document.getElementById("f").submit(), 500);
</script>"""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(page.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("host", ["127.0.0.2", "127.0.0.1"])
def test_a_page_of_another_site_cannot_steer_bookd(make_stack, open_page, queues, settings, host):
    # Given bookd without a token (its loopback callers may steer it), its listener
    # stopped, and a dead letter waiting,
    stack = make_stack()
    requests.delete(stack.url + "/", timeout=5).raise_for_status()
    assert wait_for(lambda: stack.listener_state() == "stopped", timeout=15)
    dlq = queues.queues[settings.dead_letter_queue]
    queues.sqs.send_message(
        QueueUrl=dlq.url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d"
    )
    # when the operator's browser opens a page of another origin that tries everything,
    handler = type("Attacker", (_Attacker,), {"target": stack.url})
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        open_page(f"http://{host}:{server.server_address[1]}/")
        time.sleep(4)  # the form posts after 0.5 s; a Keeper would start a listener in 1
    finally:
        server.shutdown()
        server.server_close()
    # then nothing was done: still stopped, the dead letter still there.
    assert stack.listener_state() == "stopped"
    assert dlq.depth().waiting == 1
    log = (stack.tmp / "stack.log").read_text()
    assert '"POST / HTTP/1.1" 403' in log, "the browser's requests reached bookd, refused"


def test_five_tabs_cost_no_more_aws_calls_than_one(make_stack, open_page, settings):
    stack = make_stack()
    log = settings.aws_call_log
    mine = {settings.input_queue, settings.output_queue, settings.dead_letter_queue}

    def web_calls() -> int:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        return sum(1 for c in lines if c["purpose"] == "web" and c["target"] in mine)

    def calls_while_open(tabs: int, seconds: float = 12) -> int:
        before = web_calls()
        pages = [open_page(stack.url) for _ in range(tabs)]
        for page in pages:
            expect(badge(page)).to_have_text("running")
        time.sleep(seconds)  # four or five polls of each tab
        for page in pages:
            page.close()
        return web_calls() - before

    # The stack's start asked GET / (JSON) and the workers fetched their first checks:
    # those calls land first.
    def settled() -> bool:
        before = web_calls()
        time.sleep(2)
        return web_calls() == before

    assert wait_for(settled, timeout=20)
    one, five = calls_while_open(1), calls_while_open(5)
    print(f"AWS calls of the web side in 12 s: one tab {one}, five tabs {five}")
    assert five <= one == 0
    # The count can see calls: GET / as JSON reads the input queue's depth.
    requests.get(stack.url + "/", timeout=5).raise_for_status()
    assert wait_for(lambda: web_calls() > 0, timeout=5)
