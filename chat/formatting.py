"""Message formatting, in one place: the Markdown a chat user writes becomes HTML once, when the
message is stored or edited, and that HTML travels next to the raw `body` (`html` on the wire).

markdown-it-py parses CommonMark (bold, italic, inline code, code blocks, quotes, lists, links),
with bare URLs made links, `~~strike~~`, and single newlines kept as line breaks, as chat users
expect. Raw HTML in a message is shown as text, never parsed. Then nh3 (the Rust sanitiser
ammonia) keeps only an allow-list of tags and attributes, whatever the parser produced: no
script, no event handler, no style, no `javascript:` link can reach a page, and the page's
Content-Security-Policy stays as strict as it is.
"""

from collections.abc import Sequence

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

ALLOWED_TAGS = {"p", "br", "strong", "em", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a"}
# "*": ammonia otherwise keeps `lang` and `title` on every tag (a link's title would pass).
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"*": set(), "a": {"href", "target"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}


def _image_as_link(
    renderer: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType
) -> str:
    """`![alt](url)`: a link to the picture, not the picture (no request leaves a reader's browser
    for an address a writer chose)."""
    token = tokens[index]
    src = str(token.attrGet("src") or "")
    alt = renderer.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{escapeHtml(src)}">{escapeHtml(alt)}</a>'


_markdown = MarkdownIt("commonmark", {"breaks": True, "html": False, "linkify": True}).enable(
    ["linkify", "strikethrough"]
)
_markdown.add_render_rule("image", _image_as_link)


def render(body: str) -> str:
    """The safe HTML of a message body."""
    html = _markdown.render(body)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    ).strip()
