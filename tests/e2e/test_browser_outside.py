"""The product outside the browser, watched from a browser (Debian's Chromium driven by
Playwright) against a real Daphne worker: the README's bot examples post into a room while a
person watches them arrive, and the terminal client chats with a person in the page.

The README's examples are taken from README.md itself, so they cannot drift from what is
tested: only the address (the test server's port) and the interpreter are put in.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.support.browser import logged_in_page, open_room, send
from tests.support.daphne_server import REPO_ROOT
from tests.support.terminal import TIME, finish, output, spawn

pytestmark = pytest.mark.timeout(90)

README_URL = "http://127.0.0.1:8000"


def readme_block(heading: str, language: str) -> str:
    """The first fenced block in `language` under the README section titled `heading`."""
    text = (REPO_ROOT / "README.md").read_text()
    section = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert section, f"README.md has no section {heading!r}"
    block = re.search(rf"^```{language}\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, f"README.md's section {heading!r} has no ```{language} block"
    return block.group(1)


def bodies_shown(page) -> list[str]:
    return page.locator("#messages .message .body").all_inner_texts()


def test_the_readme_bot_examples_post_while_a_browser_watches(browser, server):
    bob = logged_in_page(browser, server, "bob", viewport={"width": 1280, "height": 800})
    open_room(bob, server, "lobby")
    before = len(bodies_shown(bob))

    # The shell example: a token from create_token, then curl.
    shell = readme_block("Bots: post from a script", "sh")
    assert "create_token" in shell and "curl" in shell, shell
    shell = shell.replace(README_URL, server.base_url).replace(".venv/bin/python", sys.executable)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shell],
        cwd=REPO_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"the README's sh example failed:\n{result.stdout}\n{result.stderr}"
    expect(bob.locator("#messages .message").nth(before)).to_be_visible()
    first = bob.locator("#messages .message").nth(before)
    expect(first).to_have_attribute("data-author", "alice")
    curl_body = first.locator(".body").inner_text()
    assert curl_body and curl_body in shell, f"the page shows {curl_body!r}, which the sh example did not send"

    # The Python example, with a fresh token in CHAT_TOKEN as its text says.
    token = server.manage("create_token", "alice", "--name", "readme-python").stdout.strip().splitlines()[-1]
    script = readme_block("Bots: post from a script", "python")
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={**server.env, "CHAT_TOKEN": token, "CHAT_URL": server.base_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"the README's python example failed:\n{result.stdout}\n{result.stderr}"
    second = bob.locator("#messages .message").nth(before + 1)
    expect(second).to_have_attribute("data-author", "alice")
    python_body = second.locator(".body").inner_text()
    assert python_body and python_body in script, f"the page shows {python_body!r}, not the python example's"
    assert second.get_attribute("data-seq") in result.stdout, f"the script printed {result.stdout!r}"

    # Arrived live, once each, with no reload.
    assert bodies_shown(bob).count(curl_body) == 1 and bodies_shown(bob).count(python_body) == 1
    bob.context.close()


def test_the_terminal_client_chats_with_a_browser(browser, server):
    bob = logged_in_page(browser, server, "bob", viewport={"width": 1280, "height": 800})
    open_room(bob, server, "random")
    token = server.manage("create_token", "alice", "--name", "terminal").stdout.strip().splitlines()[-1]
    child = spawn(server, "--token", token, "--room", "random")
    try:
        child.expect_exact("online in #random: alice, bob")
        child.expect_exact("type a message")
        expect(bob.locator("#presence li[data-username=alice]")).to_be_visible()

        child.sendline("hello from the terminal")
        expect(bob.locator("#messages .message[data-author=alice] .body").last).to_have_text("hello from the terminal")

        send(bob, "hello from the browser")
        child.expect(TIME + "bob: hello from the browser")

        child.sendline("/quit")
        assert finish(child) == 0
    finally:
        child.close(force=True)
    expect(bob.locator("#presence li[data-username=alice]")).to_have_count(0)
    assert output(child).count("bob: hello from the browser") == 1
    assert bodies_shown(bob).count("hello from the terminal") == 1
    bob.context.close()
