"""The chat page in a real browser: Debian's Chromium driven by Playwright for Python.

Screenshots go to ``test-artifacts/`` at the repository root (gitignored).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.load_web import ARTIFACTS, ServerHandle, start_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
Q_24H = "How many children were reunited in the past 24 hours?"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's chromium (make chromium)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("browser"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab on the chat page that records requests leaving the machine."""

    def __init__(self, browser: Any, url: str, width: int = 1280, height: int = 900) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.external: list[str] = []
        self.page.on("request", self._request)
        self.page.goto(url)
        self.page.wait_for_selector("#qa-input textarea", timeout=30_000)

    def _request(self, request: Any) -> None:
        if not request.url.startswith(("http://127.0.0.1", "data:", "blob:", "about:")):
            self.external.append(request.url)

    def ask(self, question: str) -> None:
        """Type a question and press Enter."""
        self.page.fill("#qa-input textarea", question)
        self.page.keyboard.press("Enter")

    def bot_messages(self) -> list[Any]:
        """The rendered assistant messages."""
        return self.page.query_selector_all("#qa-chat [data-testid='bot']")

    def wait_bot_count(self, n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` assistant messages are finished (not pending)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [m for m in self.bot_messages() if not m.query_selector(".qa-pending")]
            if len(self.bot_messages()) == n and len(done) == n and \
                    self.page.is_enabled("#qa-input textarea"):
                return
            time.sleep(0.1)
        raise AssertionError(f"expected {n} finished answers, got {len(self.bot_messages())}")

    def rect(self, selector: str) -> dict[str, float] | None:
        """The bounding box of the first element matching ``selector`` (None if absent)."""
        return self.page.evaluate(
            "s => { const e = document.querySelector(s); if (!e) return null;"
            " const r = e.getBoundingClientRect();"
            " return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; }",
            selector)

    def visible_rects(self, selector: str, within: str) -> list[dict[str, float]]:
        """The parts of the elements matching ``selector`` shown inside ``within`` (a
        scrolling box), as bounding boxes; elements scrolled out of it are left out."""
        return self.page.evaluate(
            """([s, w]) => {
                const box = document.querySelector(w).getBoundingClientRect();
                const out = [];
                for (const e of document.querySelectorAll(s)) {
                    const r = e.getBoundingClientRect();
                    const v = {left: Math.max(r.left, box.left), top: Math.max(r.top, box.top),
                               right: Math.min(r.right, box.right),
                               bottom: Math.min(r.bottom, box.bottom)};
                    if (v.right > v.left && v.bottom > v.top) out.push(v);
                }
                return out;
            }""", [selector, within])

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot into test-artifacts/ and print its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        print(f"\nscreenshot: {path}")
        return path


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """True when two bounding boxes share some area."""
    return min(a["right"], b["right"]) > max(a["left"], b["left"]) and \
        min(a["bottom"], b["bottom"]) > max(a["top"], b["top"])


def test_the_question_box_holds_at_most_the_limit(server: ServerHandle, browser: Any) -> None:
    tab = Page(browser, server.url)
    box = "#qa-input textarea"
    assert "up to 2,000 characters" in (tab.page.get_attribute(box, "placeholder") or "")
    tab.page.click(box)
    tab.page.keyboard.insert_text("y" * 2500)  # as a paste inserts text
    assert len(tab.page.input_value(box)) == 2000
    tab.page.keyboard.type("zzz")
    assert tab.page.input_value(box) == "y" * 2000
    tab.page.fill(box, "")
    tab.page.keyboard.type("How many? " + "w" * 2100, delay=0)
    assert len(tab.page.input_value(box)) == 2000
    tab.page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_chat_icons_scroll_arrow_and_footer_cover_nothing(server: ServerHandle, browser: Any,
                                                          width: int) -> None:
    """The bin never sits on a message or a copy icon, the scroll-down arrow never on the
    text, and the footer shows no separator without a link after it."""
    tab = Page(browser, server.url, width=width, height=844)
    page = tab.page
    log = "#qa-chat [role=log]"
    for n, question in enumerate((Q_24H, "Who personally responded to the First Lady's letter "
                                          "about children in the war?"), start=1):
        tab.ask(question)
        tab.wait_bot_count(n)
    footer = page.inner_text("footer")
    assert "·" not in footer, f"stray separator in the footer: {footer!r}"
    if width > 640:  # gradio hides the API link on narrow screens
        assert footer.strip() == "Use via API"
    page.wait_for_selector("#qa-chat button[aria-label='Clear']")
    height = page.evaluate(f"document.querySelector({log!r}).scrollHeight")
    assert height > page.evaluate(f"document.querySelector({log!r}).clientHeight")
    for top in range(0, height + 120, 120):
        page.evaluate(f"document.querySelector({log!r}).scrollTop = {top}")
        page.wait_for_timeout(50)
        clear = tab.rect("#qa-chat button[aria-label='Clear']")
        assert clear is not None
        shown = tab.visible_rects(
            "#qa-chat [role=log] button, #qa-chat [role=log] .message", log)
        assert shown
        covered = [r for r in shown if overlap(clear, r)]
        assert not covered, f"the bin covers {covered} at scrollTop {top}"
    page.evaluate(f"document.querySelector({log!r}).scrollTop = 0")
    arrow = page.wait_for_selector("#qa-chat button[aria-label='Scroll down']", timeout=5_000)
    page.wait_for_timeout(300)
    box, text = arrow.bounding_box(), tab.rect(log)
    assert box is not None and text is not None
    arrow_rect = {"left": box["x"], "top": box["y"], "right": box["x"] + box["width"],
                  "bottom": box["y"] + box["height"]}
    assert not overlap(arrow_rect, text), "the scroll-down arrow covers the messages"
    tab.screenshot(f"chat-layout-{width}.png")
    arrow.click()
    page.wait_for_selector("#qa-chat button[aria-label='Scroll down']", state="detached",
                           timeout=5_000)
    assert tab.external == []
    page.close()


def test_answer_streams_in_with_a_highlighted_source(server: ServerHandle, browser: Any) -> None:
    tab = Page(browser, server.url)
    assert "1 article" in tab.page.inner_text("#qa-status")
    assert "extractive" in tab.page.inner_text("#qa-status")
    tab.ask(Q_24H)
    # The extractive answer's text comes in one piece, then the sources (with the <mark>);
    # test_a_language_models_answer_streams_in_pieces sees a model's tokens stream in.
    tab.page.wait_for_selector("#qa-chat .qa-answer .qa-text", timeout=30_000)
    mark = tab.page.wait_for_selector("#qa-chat .qa-sources details[open] mark",
                                      timeout=30_000)
    tab.wait_bot_count(1)
    answer = tab.bot_messages()[0]
    assert "Eight" in answer.inner_text()
    assert mark.is_visible()
    quote = mark.inner_text()
    assert "Eight children have been rejoined" in quote
    paragraph = answer.query_selector(".qa-para").inner_text()
    assert len(paragraph) > len(quote)  # the quote is shown inside its paragraph
    assert answer.query_selector(".qa-file").inner_text() == \
        "melania-trump-putin-letter-children.txt"
    assert answer.query_selector(".qa-ref").inner_text() == "[1]"
    # The source collapses and opens again.
    answer.query_selector(".qa-src summary").click()
    assert not mark.is_visible()
    answer.query_selector(".qa-src summary").click()
    assert mark.is_visible()
    path = tab.screenshot("chat-answer.png")
    assert path.stat().st_size > 10_000
    assert tab.external == []
    tab.page.close()


def test_a_language_models_answer_streams_in_pieces(server: ServerHandle, browser: Any) -> None:
    """A page over the same store whose language model (the fake chat-completions server)
    pauses halfway through its reply: the half-written text is on the page while the model
    pauses, and the sources come only with the finished answer."""
    from assistant import web
    from assistant.core import Assistant
    from tests.load_web import free_port
    from tests.test_llm import FakeLLM, Reply, cites_24_hours

    fake = FakeLLM()
    fake.reply(lambda body: Reply(cites_24_hours(body).text, stall=1.5))
    bot = Assistant(server.bot.settings, llm_url=fake.url, llm_model="test-model",
                    llm_timeout=30.0)
    bot._embed = server.bot.embed_model
    app = web.build_app(bot, examples=[])
    try:
        url = web.launch(app, bot.settings, host="127.0.0.1", port=free_port())
        tab = Page(browser, url)
        assert "LLM answers" in tab.page.inner_text("#qa-status")
        # Record the text's length, and whether the sources are shown, at every change.
        tab.page.evaluate("""() => {
            window.__frames = [];
            new MutationObserver(() => {
                const t = document.querySelector('#qa-chat .qa-answer .qa-text');
                if (t) window.__frames.push(
                    [t.innerText.length, !!document.querySelector('#qa-chat .qa-sources')]);
            }).observe(document.querySelector('#qa-chat'),
                       {subtree: true, childList: true, characterData: true});
        }""")
        tab.ask(Q_24H)
        tab.page.wait_for_selector("#qa-chat .qa-sources details[open] mark", timeout=30_000)
        tab.wait_bot_count(1)
        answer = tab.bot_messages()[0]
        assert "Eight children were reunited" in answer.inner_text()
        frames = tab.page.evaluate("window.__frames")
        final = frames[-1][0]
        before = [n for n, sources in frames if not sources]
        assert before and min(before) < final, f"the answer did not stream: {frames}"
        assert before == sorted(before), f"the text only grows: {frames}"
        shown = [sources for _, sources in frames]
        assert shown == sorted(shown), f"the sources come last: {frames}"
        assert tab.external == []
        tab.page.close()
    finally:
        app.close()
        fake.close()


def test_abstention_errors_examples_undo_retry_and_clear(server: ServerHandle,
                                                         browser: Any) -> None:
    tab = Page(browser, server.url)
    page = tab.page
    examples = page.query_selector_all("#qa-chat button.example")
    assert examples, "example questions are shown on an empty chat"
    tab.screenshot("chat-start.png")
    example_text = examples[0].inner_text().strip()
    examples[0].click()
    tab.wait_bot_count(1)
    assert page.query_selector_all("#qa-chat [data-testid='user']")[0].inner_text().strip() \
        == example_text
    assert tab.bot_messages()[0].query_selector(".qa-answer mark")

    tab.ask("What is the capital of Australia?")
    tab.wait_bot_count(2)
    abstention = tab.bot_messages()[1]
    assert abstention.query_selector(".qa-abstain")
    assert not abstention.query_selector("mark")
    text = abstention.inner_text()
    assert "Not covered by the articles" in text and "not an answer" in text
    assert len(abstention.query_selector_all(".qa-near-item")) >= 1
    tab.screenshot("chat-abstention.png")

    tab.ask("x" * 2001)  # the box keeps the first 2,000 characters
    tab.wait_bot_count(3)
    users = page.query_selector_all("#qa-chat [data-testid='user']")
    assert "(2,000 characters)" in users[2].inner_text()
    assert "too long" not in tab.bot_messages()[2].inner_text()

    page.get_by_role("button", name="Undo").last.click()
    page.wait_for_function("document.querySelectorAll(\"#qa-chat [data-testid='bot']\")"
                           ".length === 2")
    assert page.input_value("#qa-input textarea") == "x" * 2000

    page.fill("#qa-input textarea", "")
    page.get_by_role("button", name="Retry").last.click()
    time.sleep(0.3)
    tab.wait_bot_count(2)
    assert tab.bot_messages()[1].query_selector(".qa-abstain")

    page.get_by_role("button", name="Clear").click()
    page.wait_for_selector("#qa-chat button.example", timeout=10_000)
    assert tab.bot_messages() == []

    tab.ask("   ")
    tab.wait_bot_count(1)
    assert "the question is empty" in tab.bot_messages()[0].inner_text()
    assert "Traceback" not in page.inner_text("#qa-chat")
    assert tab.external == []
    page.close()


def test_upload_from_the_page_updates_the_status(tmp_path: Path, browser: Any) -> None:
    handle = start_server(tmp_path / "srv", examples=[])
    try:
        tab = Page(browser, handle.url)
        article = tmp_path / "lighthouse.md"
        article.write_text("# Old Harbor Lighthouse Reopens\n\nThe Old Harbor Lighthouse in "
                           "Port Wren reopened on Saturday. The keeper, Agnes Morrow, said the "
                           "lens can be seen from 22 nautical miles away.\n"
                           "The Port Wren Heritage Trust has funded the restoration of the "
                           "old tower.\n", encoding="utf-8")
        assert tab.page.query_selector_all("#qa-chat button.example") == []
        tab.page.set_input_files("#qa-upload input[type=file]", str(article))
        tab.page.wait_for_function(
            "document.querySelector('#qa-upload-msg').innerText.includes('Added')",
            timeout=30_000)
        assert "lighthouse.md" in tab.page.inner_text("#qa-upload-msg")
        tab.page.wait_for_function(
            "document.querySelector('#qa-status').innerText.includes('2 articles')",
            timeout=10_000)
        assert (handle.corpus / "lighthouse.md").exists()
        # The examples now include a question about the new article, also on a new page.
        new_example = "Who has funded the restoration of the old tower?"
        tab.page.wait_for_selector(f"#qa-chat button.example:has-text('{new_example}')",
                                   timeout=10_000)
        tab.screenshot("chat-upload-examples.png")
        other = Page(browser, handle.url)
        other.page.wait_for_selector(f"#qa-chat button.example:has-text('{new_example}')",
                                     timeout=10_000)
        other.page.close()
        tab.ask("How far away can the lens be seen?")
        tab.wait_bot_count(1)
        answer = tab.bot_messages()[0]
        assert "22 nautical miles" in answer.inner_text()
        assert answer.query_selector(".qa-file").inner_text() == "lighthouse.md"
        tab.screenshot("chat-upload.png")
        assert tab.external == []
        tab.page.close()
    finally:
        handle.stop()
        shutil.rmtree(tmp_path / "srv", ignore_errors=True)


def test_the_date_range_keeps_to_its_articles_and_says_so(tmp_path: Path, browser: Any) -> None:
    from tests.test_dates import ARTICLES

    handle = start_server(tmp_path / "srv", examples=[])
    try:
        for name, text in ARTICLES.items():
            (handle.corpus / name).write_text(text, encoding="utf-8")
        handle.bot.ingest()
        tab = Page(browser, handle.url)
        tab.page.fill("#qa-since input", "2024-03-08")
        tab.ask("How much will the Harbour Bridge repairs cost?")
        tab.wait_bot_count(1)
        answer = tab.bot_messages()[0]
        assert answer.query_selector(".qa-scope").inner_text() == \
            "Articles from 8 March 2024 onwards"
        assert "19 million" in answer.inner_text()
        assert {f.inner_text() for f in answer.query_selector_all(".qa-file")} == \
            {"bridge-late.txt"}
        assert answer.query_selector(".qa-outlet").inner_text() == "Coast Times"
        assert answer.query_selector(".qa-date").inner_text() == "2024-03-11"
        tab.screenshot("chat-dates.png")
        tab.page.fill("#qa-since input", "")
        tab.page.fill("#qa-as-of input", "2024-03-06")  # as on a day before the later one
        tab.ask("How much will the Harbour Bridge repairs cost?")
        tab.wait_bot_count(2)
        answer = tab.bot_messages()[1]
        assert answer.query_selector(".qa-scope").inner_text() == (
            "Articles published up to 6 March 2024, those from 6 February – 6 March 2024 first")
        assert "12 million" in answer.inner_text()
        assert {f.inner_text() for f in answer.query_selector_all(".qa-file")} == \
            {"bridge-early.txt"}
        tab.page.fill("#qa-as-of input", "")
        tab.page.fill("#qa-until input", "March 5")
        tab.ask("How much will the Harbour Bridge repairs cost?")
        tab.wait_bot_count(3)
        assert "is not a date: write it as YYYY-MM-DD" in tab.bot_messages()[2].inner_text()
        assert tab.external == []
        tab.page.close()
    finally:
        handle.stop()
