"""Files on the room page, in Debian's Chromium against a real Daphne worker: a pasted screenshot
reaches another person live as a thumbnail, a file chosen with the button is a card whose link
downloads it, a chip's cancel button stops its upload and removes it, and a file over the limit
is refused with the server's reason in plain sight.

Each user logs in once per server (a context's storage state is reused)."""

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_browser_links import serious_axe_findings
from tests.support.browser import make_room, open_room, signed_in_state
from tests.support.daphne_server import DaphneServer

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

# A PNG drawn in the page (a 120 x 80 canvas), put on a clipboard event as a screenshot is:
# a File named "image.png" in the event's DataTransfer.
PASTE_PNG = """async (input) => {
  const canvas = document.createElement('canvas');
  canvas.width = 120; canvas.height = 80;
  const g = canvas.getContext('2d');
  g.fillStyle = '#4f46e5'; g.fillRect(0, 0, 120, 80);
  g.fillStyle = '#fbbf24'; g.fillRect(30, 20, 60, 40);
  const blob = await new Promise((done) => canvas.toBlob(done, 'image/png'));
  const data = new DataTransfer();
  data.items.add(new File([blob], 'image.png', { type: 'image/png' }));
  input.focus();
  input.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
}"""


def media_env(**extra: str) -> dict[str, str]:
    return {"CHAT_MEDIA_ROOT": tempfile.mkdtemp(prefix="chat-media-"), **extra}


@pytest.fixture(scope="module")
def server():
    with DaphneServer(env=media_env()) as daphne:
        yield daphne


@pytest.fixture(scope="module")
def small_server():
    """A worker that takes files of at most 2000 bytes."""
    with DaphneServer(env=media_env(CHAT_UPLOAD_MAX_BYTES="2000")) as daphne:
        yield daphne


@pytest.fixture(scope="module")
def sessions(browser: Browser, server: DaphneServer) -> dict[str, dict]:
    return {name: signed_in_state(browser, server, name) for name in ("alice", "bob")}


@pytest.fixture
def page_as(browser: Browser, sessions: dict[str, dict]):
    contexts = []

    def make(name: str, **options) -> Page:
        context = browser.new_context(storage_state=sessions[name], accept_downloads=True, **{**DESKTOP, **options})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """For people to look at (test-artifacts/ is git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"files-{name}.png"))


def test_a_pasted_screenshot_reaches_bob_live_as_a_thumbnail(page_as, server):
    alice, bob = page_as("alice"), page_as("bob")
    open_room(alice, server, "lobby")
    open_room(bob, server, "lobby")

    composer = alice.locator("#composer-input")
    composer.evaluate(PASTE_PNG)
    chip = alice.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_count(1)
    expect(chip.locator(".chip-name")).to_have_text(re.compile(r"^screenshot-\d{8}-\d{6}\.png$"))
    expect(chip).to_have_attribute("data-state", "done")
    expect(composer).to_have_value("")  # the file, not its name as text
    name = chip.locator(".chip-name").text_content()

    composer.fill("the new logo")
    composer.press("Enter")
    expect(chip).to_have_count(0)  # the chips go with the message

    message = bob.locator("#messages .message", has_text="the new logo")
    expect(message).to_have_count(1)
    thumb = message.locator("a.attachment-image img.attachment-thumb")
    expect(thumb).to_have_count(1)
    # The space is kept before it loads: the image's own size (it fits in the box).
    expect(thumb).to_have_attribute("width", "120")
    expect(thumb).to_have_attribute("height", "80")
    expect(thumb).to_have_attribute("alt", name)
    bob.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    link = message.locator("a.attachment-image")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("href", re.compile(rf"^{re.escape(server.base_url)}/files/\d+/{re.escape(name)}$"))
    # The full image is there, as an image.
    full = bob.request.get(link.get_attribute("href"))
    assert full.status == 200 and full.headers["content-type"] == "image/png"
    # Alice's own copy shows it too, once stored.
    expect(
        alice.locator("#messages .message[data-id]", has_text="the new logo").locator("img.attachment-thumb")
    ).to_have_count(1)
    screenshot(bob, "thumbnail")
    assert not alice.errors and not bob.errors


def test_a_text_file_from_the_button_is_a_card_that_downloads(page_as, server, tmp_path):
    alice, bob = page_as("alice"), page_as("bob")
    open_room(alice, server, "random")
    open_room(bob, server, "random")
    content = ("minutes of the meeting\n" * 60).encode()  # 1380 bytes: "1.3 KB"
    alice.locator("#attach-input").set_input_files(
        files=[{"name": "minutes.txt", "mimeType": "text/plain", "buffer": content}]
    )
    chip = alice.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_attribute("data-state", "done")
    expect(chip.locator(".chip-size")).to_have_text("1.3 KB")
    alice.get_by_role("button", name="Send").click()  # a file and no text
    expect(chip).to_have_count(0)

    card = bob.locator("#messages .message .file-card", has_text="minutes.txt")
    expect(card).to_have_count(1)
    expect(card.locator(".file-card-name")).to_have_text("minutes.txt")
    expect(card.locator(".file-card-size")).to_have_text("1.3 KB")
    screenshot(bob, "card")
    with bob.expect_download() as started:
        card.get_by_role("link", name="Download minutes.txt").click()
    download = started.value
    assert download.suggested_filename == "minutes.txt"
    saved = tmp_path / "minutes.txt"
    download.save_as(saved)
    assert saved.read_bytes() == content
    assert not alice.errors and not bob.errors


def test_cancel_stops_an_upload_and_removes_its_chip(page_as, server):
    alice = page_as("alice")
    open_room(alice, server, "lobby")
    held = []
    alice.route("**/uploads/", lambda route: held.append(route))  # the upload never finishes by itself
    alice.locator("#attach-input").set_input_files(
        files=[{"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"x" * 1000}]
    )
    chip = alice.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_attribute("data-state", "uploading")
    expect(chip.locator("progress")).to_have_count(1)
    # Sending waits for it, and says so.
    alice.locator("#composer-input").fill("with the file")
    alice.locator("#composer-input").press("Enter")
    expect(alice.locator("#attach-status")).to_have_text(re.compile("finished uploading"))
    expect(alice.locator("#messages .message", has_text="with the file")).to_have_count(0)

    chip.get_by_role("button", name="Cancel the upload of big.bin").click()
    expect(chip).to_have_count(0)
    expect(alice.locator("#attachment-chips")).to_be_hidden()
    alice.unroute("**/uploads/")
    for route in held:
        try:
            route.abort()
        except Exception:  # noqa: BLE001, S110 (the page aborted it already)
            pass
    # With the keyboard: removing a chip moves the focus to the next one, the last back to the text.
    alice.locator("#attach-input").set_input_files(
        files=[{"name": f"{n}.txt", "mimeType": "text/plain", "buffer": b"x"} for n in ("one", "two")]
    )
    expect(alice.locator("#attachment-chips .attachment-chip[data-state=done]")).to_have_count(2)
    alice.get_by_role("button", name="Remove one.txt").click()
    expect(alice.get_by_role("button", name="Remove two.txt")).to_be_focused()
    alice.keyboard.press("Enter")
    expect(chip).to_have_count(0)
    expect(alice.locator("#composer-input")).to_be_focused()
    # Without it, the text goes alone.
    alice.locator("#composer-input").press("Enter")
    sent = alice.locator("#messages .message[data-id]", has_text="with the file")
    expect(sent).to_have_count(1)
    expect(sent.locator(".attachments-shown")).to_have_count(0)


def test_a_file_over_the_limit_is_refused_with_the_reason(browser, small_server):
    context = browser.new_context(storage_state=signed_in_state(browser, small_server, "alice"), **DESKTOP)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        open_room(page, small_server, "lobby")
        page.locator("#attach-input").set_input_files(
            files=[{"name": "too-big.bin", "mimeType": "application/octet-stream", "buffer": b"y" * 5000}]
        )
        chip = page.locator("#attachment-chips .attachment-chip")
        expect(chip).to_have_attribute("data-state", "failed")
        status = page.locator("#attach-status")
        expect(status).to_be_visible()
        expect(status).to_have_attribute("role", "alert")
        expect(status).to_contain_text("too-big.bin was not uploaded")
        expect(status).to_contain_text("The file is larger than 2 KB.")  # the server's reason names the limit
        expect(chip.locator(".chip-note")).to_have_text("Not uploaded")
        expect(chip.locator(".chip-name")).to_be_visible()
        screenshot(page, "refused")
        # A refused file does not go: Send with nothing else sends nothing.
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#messages .message.outbox")).to_have_count(0)
        chip.get_by_role("button", name="Remove too-big.bin").click()
        expect(chip).to_have_count(0)
        expect(status).to_be_hidden()
    finally:
        context.close()


def test_a_message_with_a_file_written_during_an_outage_goes_once_with_its_file(page_as, server):
    alice = page_as("alice")
    open_room(alice, server, "lobby")
    alice.locator("#attach-input").set_input_files(
        files=[{"name": "plan.txt", "mimeType": "text/plain", "buffer": b"step one\n"}]
    )
    expect(alice.locator("#attachment-chips .attachment-chip")).to_have_attribute("data-state", "done")
    server.stop_worker()
    try:
        expect(alice.locator("#status")).not_to_have_attribute("data-state", "live")
        alice.locator("#composer-input").fill("the plan, sent while offline")
        alice.locator("#composer-input").press("Enter")
        pending = alice.locator("#messages .message.pending", has_text="the plan, sent while offline")
        expect(pending).to_have_count(1)
        expect(pending.locator(".file-card-name")).to_have_text("plan.txt")  # shown at once, as it will be
    finally:
        server.start_worker()
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    stored = alice.locator("#messages .message[data-id]:not(.pending)", has_text="the plan, sent while offline")
    expect(stored).to_have_count(1)
    expect(stored.locator(".file-card-name")).to_have_text("plan.txt")
    # Stored once, with its file (the resend kept the attachment).
    history = alice.request.get(f"{server.base_url}/api/rooms/lobby/messages/?limit=5").json()
    sent = [m for m in history["messages"] if m["body"] == "the plan, sent while offline"]
    assert len(sent) == 1 and [a["name"] for a in sent[0]["attachments"]] == ["plan.txt"]


@pytest.mark.parametrize(
    "options",
    [{**DESKTOP, "color_scheme": "light"}, {**PHONE, "color_scheme": "dark"}],
    ids=["desktop-light", "phone-dark"],
)
def test_files_chips_and_search_results_have_no_serious_accessibility_findings(page_as, server, options):
    # The pages' Content-Security-Policy blocks the script axe-core is injected as: bypassed here only.
    page = page_as("alice", **options, bypass_csp=True)
    open_room(page, server, "lobby")
    page.locator("#composer-input").evaluate(PASTE_PNG)
    expect(page.locator("#attachment-chips .attachment-chip")).to_have_attribute("data-state", "done")
    page.locator("#attach-input").set_input_files(
        files=[{"name": "report.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n" + b"0" * 3000}]
    )
    expect(page.locator("#attachment-chips .attachment-chip[data-state=done]")).to_have_count(2)
    assert serious_axe_findings(page) == []
    text = f"accessible files at {options['viewport']['width']} px"
    page.locator("#composer-input").fill(text)
    page.locator("#composer-input").press("Enter")
    sent = page.locator("#messages .message[data-id]:not(.pending)", has_text=text)
    expect(sent.locator("img.attachment-thumb")).to_have_count(1)
    expect(sent.locator(".file-card")).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=sent.locator("img").element_handle())
    assert serious_axe_findings(page) == []

    box = page.get_by_role("searchbox", name="Search messages")
    box.fill("accessible files")
    box.press("Enter")
    expect(page.locator("#search-results mark").first).to_have_text("accessible files")
    assert serious_axe_findings(page) == []


DROP_FILE = """(target) => {
  const data = new DataTransfer();
  data.items.add(new File(['dropped text\\n'], 'dropped.txt', { type: 'text/plain' }));
  for (const type of ['dragenter', 'dragover']) {
    target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
  }
  const shown = target.classList.contains('dragging');
  target.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  return shown;
}"""


def test_a_dropped_file_is_attached_and_an_edit_keeps_it_a_deletion_takes_it(page_as, server):
    alice, bob = page_as("alice"), page_as("bob")
    open_room(alice, server, "lobby")
    open_room(bob, server, "lobby")
    assert alice.locator(".room-main").evaluate(DROP_FILE), "no drop zone shown while dragging"
    chip = alice.locator("#attachment-chips .attachment-chip")
    expect(chip.locator(".chip-name")).to_have_text("dropped.txt")
    expect(chip).to_have_attribute("data-state", "done")
    expect(alice.locator(".room-main")).not_to_have_class(re.compile(r"\bdragging\b"))
    alice.locator("#composer-input").fill("dropped in")
    alice.locator("#composer-input").press("Enter")

    mine = alice.locator("#messages .message[data-id]:not(.pending)", has_text="dropped in")
    expect(mine).to_have_count(1)
    seen = bob.locator(f"#messages .message[data-id='{mine.get_attribute('data-id')}']")
    expect(seen.locator(".file-card-name")).to_have_text("dropped.txt")
    mine = alice.locator(f"#messages .message[data-id='{mine.get_attribute('data-id')}']")
    mine.hover()
    mine.get_by_role("button", name="Edit message").click()
    editor = alice.get_by_role("textbox", name="Edit message")
    editor.fill("dropped in (edited)")
    editor.press("Enter")
    expect(seen.locator(".body")).to_have_text("dropped in (edited)")
    expect(seen.locator(".file-card-name")).to_have_text("dropped.txt")  # an edit keeps the file

    mine.hover()
    mine.get_by_role("button", name="Delete message").click()
    alice.locator("#delete-dialog").get_by_role("button", name="Delete").click()
    expect(seen).to_have_class(re.compile(r"\bdeleted\b"))
    expect(seen.locator(".attachments-shown")).to_have_count(0)  # a deleted message shows no file


def test_files_waiting_above_the_composer_keep_the_newest_message_in_view(page_as, server):
    make_room(server, "long-files", messages=30, read={"alice": 30})
    page = page_as("alice", **PHONE)
    open_room(page, server, "long-files")
    newest = page.locator("#messages .message", has_text="message 30")
    expect(newest).to_be_in_viewport(ratio=1)
    page.locator("#attach-input").set_input_files(
        files=[{"name": f"part-{n}.txt", "mimeType": "text/plain", "buffer": b"x"} for n in range(4)]
    )
    expect(page.locator("#attachment-chips .attachment-chip[data-state=done]")).to_have_count(4)
    expect(newest).to_be_in_viewport(ratio=1)


def test_a_reply_in_a_thread_takes_a_file_too(page_as, server):
    alice, bob = page_as("alice"), page_as("bob")
    make_room(server, "thread-files")
    open_room(alice, server, "thread-files")
    open_room(bob, server, "thread-files")
    alice.locator("#composer-input").fill("the thread with files")
    alice.locator("#composer-input").press("Enter")
    root = bob.locator("#messages .message[data-id]", has_text="the thread with files")
    expect(root).to_have_count(1)
    root.hover()
    root.get_by_role("button", name="Reply in thread").click()
    expect(bob.locator("#thread-input")).to_be_focused()
    # Dropped on the thread panel, it waits in the thread's composer, not the room's.
    assert bob.locator("#thread-panel").evaluate(DROP_FILE)
    expect(bob.locator("#thread-attachment-chips .attachment-chip[data-state=done]")).to_have_count(1)
    expect(bob.locator("#attachment-chips .attachment-chip")).to_have_count(0)
    bob.locator("#thread-input").fill("my notes")
    bob.locator("#thread-input").press("Enter")
    expect(bob.locator("#thread-attachment-chips .attachment-chip")).to_have_count(0)
    reply = bob.locator("#thread-messages .message.reply[data-id]:not(.pending)", has_text="my notes")
    expect(reply.locator(".file-card-name")).to_have_text("dropped.txt")
    # Alice sees the thread's summary, and the file in the thread.
    summary = alice.locator("#messages .message", has_text="the thread with files").locator(".thread-summary")
    expect(summary).to_contain_text("1 reply")
    summary.click()
    shown = alice.locator("#thread-messages .message.reply", has_text="my notes")
    expect(shown.locator(".file-card-name")).to_have_text("dropped.txt")
