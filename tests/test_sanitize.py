"""sanitize_html against real XSS vectors, and Mastodon's own markup surviving it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from app.text import html_to_text, sanitize_html

# The allowlist as the project defines it, written out here so a loosened sanitizer fails.
TAGS = {"p", "br", "span", "a", "del", "pre", "code", "em", "strong", "b", "i", "u", "ul", "ol"}
TAGS |= {"li", "blockquote"}
ATTRS = {"a": {"href", "class", "rel", "target"}, "span": {"class"}}
CLASSES = {"h-card", "u-url", "mention", "hashtag", "invisible", "ellipsis"}
VOID = {"br"}

# OWASP XSS filter evasion cheat sheet style vectors, plus known mutation-XSS payloads.
VECTORS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://xss.example/xss.js></SCRIPT>",
    "<script\x20type='text/javascript'>alert(1);</script>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)">x</a>',
    '<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105'
    '&#0000112&#0000116&#0000058alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    '<a href="java\x00script:alert(1)">x</a>',
    '<a href=" &#14;  javascript:alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="//evil.example/steal">x</a>',
    '<a href="/\\evil.example/steal">x</a>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<div style="background-image: url(javascript:alert(1))">x</div>',
    '<p style="width: expression(alert(1))">x</p>',
    "<style>@import 'https://evil.example/xss.css';</style>",
    '<link rel="stylesheet" href="https://evil.example/xss.css">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<form action="https://evil.example/"><button>go</button></form>',
    '<input onfocus="alert(1)" autofocus>',
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>x</details>",
    "<video><source onerror=alert(1)></video>",
    '<a href="https://ok.example/" onmouseover="alert(1)">x</a>',
    "<p onclick=\"alert('x')\">x</p>",
    '<span class="h-card" onfocus=alert(1) autofocus tabindex=1>x</span>',
    '<a href="https://ok.example/" style="color:red" id="x" target="_self">x</a>',
    "<xss id=x tabindex=1 onfocus=alert(1)></xss>",
    "<img src=x onerror=alert(1)//",
    "<p>unclosed <a href='javascript:alert(1)",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '<<SCRIPT>alert("XSS");//<</SCRIPT>',
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>">',
    '<!--<img src="--><img src=x onerror=alert(1)//">',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style>",
    "<template><script>alert(1)</script></template>",
    "<textarea><script>alert(1)</script></textarea>",
    '<a href="https://ok.example/"><img src=x onerror=alert(1)></a>',
]


class Markup(HTMLParser):
    """Records the tags, attributes and text a browser-like parser sees in the output."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_safe(out: str) -> None:
    """Fails unless ``out`` holds only allowlisted, well-formed, script-free markup."""
    lowered = out.lower()
    assert "<script" not in lowered
    for forbidden in ("iframe", "object", "embed", "style", "svg", "math", "form", "meta"):
        assert f"<{forbidden}" not in lowered
    for tag in re.findall(r"<[^>]*>", out):
        assert not re.search(r"\son\w+\s*=", tag, re.IGNORECASE), tag
        assert not re.search(r"(javascript|data|vbscript):", tag, re.IGNORECASE), tag
    parsed = Markup(out)
    assert not parsed.open, f"unclosed {parsed.open}"
    for tag, attrs in parsed.elements:
        assert tag in TAGS, tag
        assert set(attrs) <= ATTRS.get(tag, set()), (tag, attrs)
        if tag == "a":
            assert attrs.get("rel") == "nofollow noopener noreferrer"
            assert attrs.get("target") == "_blank"
            href = attrs.get("href")
            assert href is None or re.match(r"\s*https?://[^/\\]", href, re.IGNORECASE), href
        if "class" in attrs:
            assert set((attrs["class"] or "").split()) <= CLASSES, attrs


@pytest.mark.parametrize("vector", VECTORS)
def test_xss_vector_is_neutralised(vector: str) -> None:
    """No script, handler, dangerous URL or foreign element survives, and output is stable."""
    out = sanitize_html(vector)
    assert_safe(out)
    assert sanitize_html(out) == out


@pytest.mark.parametrize("vector", VECTORS)
def test_xss_vector_inside_good_markup(vector: str) -> None:
    """A payload wrapped in legitimate post markup is neutralised just the same."""
    out = sanitize_html(f"<p>hello <strong>{vector}</strong> world</p>")
    assert_safe(out)
    assert "hello" in out


def test_vector_list_is_large_enough() -> None:
    """The suite keeps at least 25 distinct attack vectors."""
    assert len(set(VECTORS)) >= 25


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert('gone')</script><p>kept</p>",
        "<style>p { color: red } /* gone */</style><p>kept</p>",
        "<p>kept</p><iframe>gone</iframe><template>gone</template>",
        "<p>kept</p><noscript>gone</noscript><textarea>gone</textarea>",
    ],
)
def test_script_and_style_contents_removed(markup: str) -> None:
    """Scripts, styles and embedded documents vanish with their content, not left as text."""
    out = sanitize_html(markup)
    assert "kept" in out
    assert "gone" not in out and "alert" not in out and "color" not in out


@pytest.mark.parametrize(
    "element",
    [
        "<object>gone</object>",
        "<applet>gone</applet>",
        "<noembed>gone</noembed>",
        "<noframes>gone</noframes>",
        "<select><option>gone</option></select>",
        "<title>gone</title>",
        "<xmp>gone</xmp>",
        "<svg>gone</svg>",
        "<math><mi>x</mi>gone</math>",
    ],
)
def test_non_text_elements_removed_with_content(element: str) -> None:
    """Embedded objects, form controls, raw-text elements and foreign SVG/MathML content
    vanish whole, both when sanitizing and when reading markup as text."""
    assert sanitize_html(f"<p>kept</p>{element}") == "<p>kept</p>"
    assert html_to_text(f"<p>kept</p>{element}") == "kept"


def test_comments_removed() -> None:
    """HTML comments are dropped, so nothing hides in them."""
    assert sanitize_html("<p>a<!-- hidden -->b</p>") == "<p>ab</p>"


def test_plain_http_links_keep_their_href() -> None:
    """http:// links are as valid as https:// ones."""
    out = sanitize_html('<p><a href="http://example.org/a">x</a></p>')
    assert Markup(out).elements[1] == (
        "a",
        {"href": "http://example.org/a", "target": "_blank", "rel": "nofollow noopener noreferrer"},
    )


def test_mastodon_hashtag_and_mention_markup_survives() -> None:
    """Mastodon's h-card mention and tag link keep href and classes, gain rel and target."""
    markup = (
        '<p><span class="h-card" translate="no"><a href="https://m.example/@ann" '
        'class="u-url mention">@<span>ann</span></a></span> A1: yes! '
        '<a href="https://m.example/tags/edchat" class="mention hashtag" rel="tag">'
        "#<span>edchat</span></a></p>"
    )
    parsed = Markup(sanitize_html(markup))
    assert parsed.elements == [
        ("p", {}),
        ("span", {"class": "h-card"}),
        (
            "a",
            {
                "href": "https://m.example/@ann",
                "class": "u-url mention",
                "target": "_blank",
                "rel": "nofollow noopener noreferrer",
            },
        ),
        ("span", {}),
        (
            "a",
            {
                "href": "https://m.example/tags/edchat",
                "class": "mention hashtag",
                "target": "_blank",
                "rel": "nofollow noopener noreferrer",
            },
        ),
        ("span", {}),
    ]
    assert "".join(parsed.text) == "@ann A1: yes! #edchat"


def test_mastodon_shortened_link_survives() -> None:
    """Long links keep Mastodon's invisible/ellipsis spans so the page can shorten them."""
    markup = (
        '<p><a href="https://example.org/a/very/long/path?x=1&amp;y=2" rel="nofollow noopener" '
        'translate="no" target="_blank"><span class="invisible">https://</span>'
        '<span class="ellipsis">example.org/a/very</span><span class="invisible">'
        "/long/path?x=1&amp;y=2</span></a></p>"
    )
    out = sanitize_html(markup)
    assert_safe(out)
    parsed = Markup(out)
    assert parsed.elements[1] == (
        "a",
        {
            "href": "https://example.org/a/very/long/path?x=1&y=2",
            "target": "_blank",
            "rel": "nofollow noopener noreferrer",
        },
    )
    assert [a.get("class") for t, a in parsed.elements if t == "span"] == [
        "invisible",
        "ellipsis",
        "invisible",
    ]


def test_formatting_markup_survives() -> None:
    """Quotes, lists, code and emphasis Mastodon allows are kept as they are."""
    markup = (
        "<p>one<br>two</p><blockquote><p><em>quoted</em> <strong>bold</strong> <b>b</b> "
        "<i>i</i> <u>u</u> <del>gone</del></p></blockquote><ul><li>x</li></ul>"
        "<ol><li>y</li></ol><pre><code>a &lt; b</code></pre>"
    )
    assert sanitize_html(markup) == markup


def test_unknown_classes_and_tags_are_dropped_but_text_kept() -> None:
    """Classes outside the allowlist go; unknown tags are unwrapped, their text kept."""
    out = sanitize_html(
        '<div class="status"><span class="invisible overlay">x</span>'
        '<a class="btn" href="https://ok.example">y</a><h1>Title</h1></div>'
    )
    assert_safe(out)
    assert '<span class="invisible">x</span>' in out
    assert "btn" not in out and "overlay" not in out and "<h1" not in out and "Title" in out


def test_output_is_balanced_and_escaped() -> None:
    """Unclosed and stray tags are repaired, bare '<' and '&' are escaped."""
    out = sanitize_html("<p><strong>bold <em>both</p></div></body> 1 < 2 & 3")
    assert_safe(out)
    assert "1 &lt; 2 &amp; 3" in out


@pytest.mark.parametrize("attr", ["style", "title", "id", "lang", "dir", "data-x", "onclick"])
def test_span_keeps_only_its_class(attr: str) -> None:
    """A span keeps an allowed class and nothing else: style, title and the rest are removed
    even though no script vector needs them (CSS overlays and fake tooltips do)."""
    out = sanitize_html(f'<p><span class="mention" {attr}="position:fixed;top:0">x</span></p>')
    assert out == '<p><span class="mention">x</span></p>', out
