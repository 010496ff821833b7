"""Formatting cannot be turned against a reader: the usual cross-site-scripting payloads, sent
through every Markdown construct the page renders, reach a real Chromium as inert text or as
allow-listed markup, nothing runs, and the Content-Security-Policy reports nothing it had to block.
"""

import textwrap

from playwright.sync_api import expect

from tests.support.browser import logged_in_page, open_room
from tests.support.daphne_server import DaphneServer

# Each one tries to run `window.__xss = N` (or an alert) through a different construct.
PAYLOADS = [
    "**<img src=x onerror=window.__xss=1>** bold",
    "_<svg onload=window.__xss=2>_ italic",
    "`</code><script>window.__xss=3</script>` inline code",
    "```\n</code></pre><script>window.__xss=4</script>\n```",
    "> <iframe src=javascript:window.__xss=5></iframe> quote",
    "- [list link](javascript:window.__xss=6)\n- <a href=javascript:window.__xss=7>raw</a>",
    "1. [data](data:text/html,<script>window.__xss=8</script>)\n2. [vb](vbscript:msgbox(1))",
    "[entity](&#x6A;avascript:window.__xss=9) and [tab](java\tscript:window.__xss=10)",
    '[title](https://example.com "onmouseover=window.__xss=11") <javascript:window.__xss=12>',
    'https://example.com/"onmouseover="window.__xss=13" bare url',
    "![image](javascript:window.__xss=14) ![pixel](https://example.com/x.png)",
    "<details open ontoggle=window.__xss=15> <style>body{display:none}</style> <form action=javascript:alert(1)>",
    "~~<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=16>~~",
]
ALLOWED_TAGS = {"P", "BR", "STRONG", "EM", "S", "DEL", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "A"}


def _post_all(server: DaphneServer, slug: str) -> None:
    code = f"""
    from django.contrib.auth import get_user_model
    from chat import services
    room = services.room_create(slug={slug!r}, name="XSS")
    mallory = get_user_model().objects.get(username="bob")
    for body in {PAYLOADS!r}:
        services.message_send(room=room, author=mallory, body=body)
    """
    server.manage("shell", "--verbosity", "0", "--command", textwrap.dedent(code))


def test_xss_payloads_in_every_formatting_construct_stay_inert(browser, server):
    _post_all(server, "xss")
    page = logged_in_page(browser, server, "alice")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_room(page, server, "xss")
    messages = page.locator("#messages .message[data-id]")
    expect(messages).to_have_count(len(PAYLOADS))
    # Hover and click through everything the payloads could have made active.
    for link in page.locator("#messages a[href]").all():
        link.hover()
    page.locator("#messages").click(position={"x": 5, "y": 5})

    found = page.locator("#messages").evaluate(
        """root => {
          const bodies = [...root.querySelectorAll('.message .body')];
          const inside = bodies.flatMap(b => [...b.querySelectorAll('*')]);
          return {
            xss: window.__xss ?? null,
            tags: [...new Set(inside.map(e => e.tagName))],
            handlers: inside.flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on') || n === 'style' || n === 'src'),
            hrefs: [...root.querySelectorAll('a[href]')].map(a => a.protocol),
            bodies: bodies.length,
          };
        }"""
    )
    assert found["bodies"] >= len(PAYLOADS), found
    assert found["xss"] is None and dialogs == []
    assert set(found["tags"]) <= ALLOWED_TAGS, found["tags"]
    assert found["handlers"] == []
    assert set(found["hrefs"]) <= {"http:", "https:", "mailto:"}, found["hrefs"]
    assert page.csp_violations == []
    # The formatting itself works on the same page: bold, code blocks and the payloads as text.
    expect(page.locator("#messages strong", has_text="<img src=x onerror=window.__xss=1>")).to_have_count(1)
    expect(page.locator("#messages pre code", has_text="<script>window.__xss=4</script>")).to_have_count(1)
    page.context.close()
