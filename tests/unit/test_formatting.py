"""chat.formatting.render: the Markdown people write becomes the HTML the page inserts as is, so
every construct must come out as expected and no payload may get a tag, an attribute or a link
scheme past the allow-list (checked by parsing the output as a browser would read it)."""

import re
from html.parser import HTMLParser

import pytest

from chat.formatting import render

# The tags and attributes a message's `html` may contain, as the protocol promises them. `s` is what
# markdown-it makes of ~~strike~~; an ordered list that starts elsewhere than 1 keeps its number.
ALLOWED: dict[str, set[str]] = {
    "p": set(),
    "br": set(),
    "strong": set(),
    "em": set(),
    "s": set(),
    "del": set(),
    "code": set(),
    "pre": set(),
    "blockquote": set(),
    "ul": set(),
    "ol": {"start"},
    "li": set(),
    "a": {"href", "rel", "target"},
}
LINK_SCHEMES = {"http", "https", "mailto"}
LINK = 'target="_blank" rel="nofollow noopener noreferrer"'


class _Elements(HTMLParser):
    """Every start tag with its attributes (entities decoded, as a browser decodes them), and
    anything that is not an element or text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.other: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    def handle_comment(self, data: str) -> None:
        self.other.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.other.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.other.append(f"processing instruction {data!r}")


_CONTROL_AND_SPACE = "".join(chr(code) for code in range(0x21))


def _scheme(href: str) -> str:
    """The scheme a browser would follow: it drops tabs and newlines anywhere and control
    characters and spaces around the address before reading it."""
    cleaned = re.sub(r"[\t\n\r]", "", href).strip(_CONTROL_AND_SPACE)
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", cleaned)
    return match.group(1).lower() if match else ""


def assert_safe(html: str) -> None:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    assert not parser.other, (html, parser.other)
    for tag, attrs in parser.elements:
        assert tag in ALLOWED, (tag, html)
        names = [name for name, _ in attrs]
        assert set(names) <= ALLOWED[tag], (tag, names, html)
        assert len(names) == len(set(names)), html
        values = dict(attrs)
        if tag == "a":
            assert values["rel"] == "nofollow noopener noreferrer" and values["target"] == "_blank", html
            if "href" in values:
                # A relative address stays on this site; any scheme must be one of the three.
                assert _scheme(values["href"] or "") in LINK_SCHEMES | {""}, html
        if tag == "ol" and "start" in values:
            assert (values["start"] or "").isdigit(), html


def _tags(html: str) -> list[str]:
    parser = _Elements()
    parser.feed(html)
    return [tag for tag, _ in parser.elements]


# Every construct ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "html"),
    [
        ("plain words", "<p>plain words</p>"),
        ("**bold** and __bold__", "<p><strong>bold</strong> and <strong>bold</strong></p>"),
        ("*italic* and _italic_", "<p><em>italic</em> and <em>italic</em></p>"),
        ("use `a < b && c`", "<p>use <code>a &lt; b &amp;&amp; c</code></p>"),
        (
            "```python\nif a < b:\n    print('<b>')\n```",
            "<pre><code>if a &lt; b:\n    print('&lt;b&gt;')\n</code></pre>",
        ),
        ("> quoted\n> still quoted", "<blockquote>\n<p>quoted<br>\nstill quoted</p>\n</blockquote>"),
        ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>"),
        ("3. three\n4. four", '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>'),
        ("- a\n- b\n* c", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n<ul>\n<li>c</li>\n</ul>"),
        ("[the docs](https://example.com/docs)", f'<p><a href="https://example.com/docs" {LINK}>the docs</a></p>'),
        (
            "see https://example.com/a?b=1&c=2 now",
            f'<p>see <a href="https://example.com/a?b=1&amp;c=2" {LINK}>https://example.com/a?b=1&amp;c=2</a> now</p>',
        ),
        ("www.example.com", f'<p><a href="http://www.example.com" {LINK}>www.example.com</a></p>'),
        ("write to bob@example.com", f'<p>write to <a href="mailto:bob@example.com" {LINK}>bob@example.com</a></p>'),
        ("~~gone~~ kept", "<p><s>gone</s> kept</p>"),
        # A picture is a link to it: the reader's browser fetches nothing the writer chose.
        ("![a cat](https://example.com/cat.png)", f'<p><a href="https://example.com/cat.png" {LINK}>a cat</a></p>'),
        ("# not a heading", "<p># not a heading</p>"),  # headings and rules are not chat
        ("---", "<p>---</p>"),
        ("done\n---", "<p>done<br>\n---</p>"),
        ("* * *", "<p>* * *</p>"),  # markup that leaves nothing to read stays as written
        (  # a linked badge: the link to the page, with the picture's text (no link inside a link)
            "[![build](https://example.com/b.svg)](https://ci.example.com)",
            f'<p><a href="https://ci.example.com" {LINK}>build</a></p>',
        ),
        ("line one\nline two", "<p>line one<br>\nline two</p>"),
        ("first\n\nsecond", "<p>first</p>\n<p>second</p>"),
        ("", ""),
    ],
)
def test_each_construct_renders_as_a_reader_expects(body: str, html: str) -> None:
    rendered = render(body)
    assert rendered == html
    assert_safe(rendered)


def test_nested_constructs_keep_their_nesting() -> None:
    rendered = render("> - **bold _and italic_** with `code`\n> - [a **link**](https://example.com)")
    assert _tags(rendered) == ["blockquote", "ul", "li", "strong", "em", "code", "li", "a", "strong"]
    assert_safe(rendered)


def test_a_code_block_is_shown_verbatim() -> None:
    body = "```\n<script>alert(1)</script>\n**not bold** [not](https://a.link)\n\n  indented\n```"
    rendered = render(body)
    assert _tags(rendered) == ["pre", "code"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\n**not bold** [not](https://a.link)\n\n  indented\n" in rendered


# Hostile input -----------------------------------------------------------------------------

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<img src="x" onerror="alert(1)">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<a href="javascript:alert(1)">click</a>',
    '<a href="https://example.com" onclick="alert(1)">click</a>',
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<!-- a comment --><b>bold</b>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](java\nscript:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](javascript&colon;alert(1))",
    "[click](<javascript:alert(1)>)",
    "[click]( javascript:alert(1))",
    "[click](%6Aavascript:alert(1))",
    "[click](\x01javascript:alert(1))",
    "[click](data:text/html,<script>alert(1)</script>)",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](data:image/png;base64,iVBORw0KGgo=)",
    "[click](vbscript:msgbox(1))",
    "[click](file:///etc/passwd)",
    "[click]: javascript:alert(1)\n\n[click]",
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    "<data:text/html;base64,PHNjcmlwdD4=>",
    "<vbscript:msgbox(1)>",
    "javascript:alert(1)",
    "![x](javascript:alert(1))",
    '![x" onerror="alert(1)](https://example.com/a.png)',
    '![x](https://example.com/a.png" onerror="alert(1))',
    '[x](https://example.com "title" onmouseover="alert(1)")',
    '[x](https://example.com "a\\" onmouseover=\\"alert(1)")',
    "[x](https://example.com 'a\" onmouseover=\"alert(1)')",
    '[x](https://example.com/"onmouseover="alert(1))',
    'https://example.com/"onmouseover="alert(1)',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "&#x3C;svg onload=alert(1)&#x3E;",
    "**[click](javascript:alert(1))**",
    "> - *[click](javascript:alert(1))*",
    "[![x](https://example.com/a.png)](javascript:alert(1))",
    "[![x](javascript:alert(1))](https://example.com)",
    "`<script>`**<img src=x onerror=alert(1)>**",
    "<<script>script>alert(1)<</script>/script>",
    "\x00<script>alert(1)</script>",
]


@pytest.mark.parametrize("body", PAYLOADS)
def test_no_payload_gets_past_the_allow_list(body: str) -> None:
    assert_safe(render(body))


@pytest.mark.parametrize(
    "body",
    ["<script>alert(1)</script>", '<img src="x" onerror="alert(1)">', '<a href="javascript:alert(1)">x</a>'],
)
def test_html_in_a_message_is_shown_as_text(body: str) -> None:
    """What someone types between angle brackets is what the others read, not markup."""
    parser = _Elements()
    rendered = render(body)
    parser.feed(rendered)
    assert [tag for tag, _ in parser.elements] == ["p"]
    assert rendered == "<p>" + body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</p>"


def test_a_link_keeps_only_its_address() -> None:
    """A title (or anything smuggled in it) is not on the allow-list: the link keeps its address."""
    rendered = render('[x](https://example.com "a\\" onmouseover=\\"alert(1)")')
    assert rendered == f'<p><a href="https://example.com" {LINK}>x</a></p>'
