"""Hashtag rules, lengths, plain-text rendering and HTML-to-text."""

from __future__ import annotations

import re

import pytest

from app.text import (
    append_hashtag,
    clean_name,
    contains_any_hashtag,
    contains_hashtag,
    count_graphemes,
    find_hashtags,
    html_to_text,
    mastodon_length,
    normalize_hashtag,
    normalize_hashtags,
    render_text,
    sanitize_html,
    split_hashtags,
    tag_key,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # man woman girl boy
FLAG_NG = "\U0001f1f3\U0001f1ec"
WAVE_DARK = "\U0001f44b\U0001f3ff"
E_ACUTE_DECOMPOSED = "e\u0301"


# --- normalize_hashtag / tag_key ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("#EdChat", "EdChat"),
        ("  edchat  ", "edchat"),
        ("# EdChat ", "EdChat"),
        ("ed_chat2025", "ed_chat2025"),
        ("2025edchat", "2025edchat"),
        ("café", "café"),
        ("caf" + E_ACUTE_DECOMPOSED, "café"),
        ("日本語", "日本語"),
        ("हिन्दी", "हिन्दी"),
        ("a" * 100, "a" * 100),
    ],
)
def test_normalize_hashtag_accepts(raw: str, stored: str) -> None:
    """Valid tags lose one '#' and surrounding space, keep their case, and are NFC."""
    assert normalize_hashtag(raw) == stored


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("#", "empty"),
        ("   ", "empty"),
        ("ed chat", "only letters, digits and underscore"),
        ("ed-chat", "only letters, digits and underscore"),
        ("##edchat", "only letters, digits and underscore"),
        ("edchat!", "only letters, digits and underscore"),
        ("ed🌱chat", "only letters, digits and underscore"),
        ("<script>", "only letters, digits and underscore"),
        ("2025", "not only digits"),
        ("a" * 101, "longer than 100"),
    ],
)
def test_normalize_hashtag_rejects(raw: str, message: str) -> None:
    """Invalid tags raise ValueError saying what to fix."""
    with pytest.raises(ValueError, match=message):
        normalize_hashtag(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("#", "hashtag is empty"),
        ("a" * 101, "hashtag is longer than 100 characters"),
        ("ed-chat", "hashtag may contain only letters, digits and underscore"),
        ("\u0301edchat", "hashtag may contain only letters, digits and underscore"),
        ("2025", "hashtag needs at least one letter or underscore, not only digits"),
    ],
)
def test_normalize_hashtag_error_is_the_whole_message(raw: str, message: str) -> None:
    """The API and the room form show these messages verbatim; a tag may not start with a
    combining mark (it would attach to the '#')."""
    with pytest.raises(ValueError) as caught:
        normalize_hashtag(raw)
    assert str(caught.value) == message


def test_tag_key_is_case_and_form_insensitive() -> None:
    """Spellings differing in case, a leading '#', casefolding or Unicode form share a key."""
    assert tag_key("#EdChat") == tag_key("edchat") == "edchat"
    assert tag_key("Straße") == tag_key("STRASSE")
    assert tag_key("CAF" + "E\u0301") == tag_key("café")


# --- contains_hashtag ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Join us for #edchat tonight", True),
        ("#EdChat", True),
        ("#EDCHAT at 8pm", True),
        ("great chat #edchat!", True),
        ("great chat #edchat.", True),
        ("(#edchat)", True),
        ("A1: yes,#edchat", True),
        ("line one\n#edchat", True),
        ("#edchat’s best hour", True),
        ("##edchat", True),
        ("#edchat🌱", True),
        ("#edchatter", False),
        ("#edchat_uk", False),
        ("#edchat2", False),
        ("#ed", False),
        ("foo#edchat", False),
        ("ed#edchat", False),
        ("https://x.org/#edchat", False),
        ("see https://x.org/page#edchat now", False),
        ("see https://x.org/?q=#edchat", False),
        ("edchat without the hash", False),
        ("", False),
    ],
)
def test_contains_hashtag(text: str, expected: bool) -> None:
    """Only a whole '#edchat' not glued to a word or inside a URL counts, in any case."""
    assert contains_hashtag(text, "edchat") is expected


def test_contains_hashtag_accepts_tag_with_hash_and_unicode() -> None:
    """The tag may be given with '#', and non-ASCII tags compare by casefold."""
    assert contains_hashtag("Willkommen #STRASSENFEST", "#straßenfest")
    assert contains_hashtag("今夜は #日本語チャット です", "日本語チャット")
    assert not contains_hashtag("今夜は #日本語チャットです", "日本語チャット")


def test_find_hashtags_lists_tags_as_typed() -> None:
    """find_hashtags returns every tag in order, skipping URL fragments and numbers."""
    text = "A1 #EdChat and #permaculture; not https://x.org/#frag nor #2025 nor a#b"
    assert find_hashtags(text) == ["EdChat", "permaculture"]


# A URL is at most 4096 characters after the scheme (written out, not imported, so a
# changed cap fails). CAPPED_URL fills it, ending in a character that is not trimmed.
URL_CAP = 4096
CAPPED_URL = "https://" + "a" * (URL_CAP - 1) + "-"


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("vote #A or #B", ["A", "B"]),
        ("# edchat", []),
        ("##edchat", ["edchat"]),
        ("#\u0301edchat", []),
        ("FAQ: https://ex.org/faq.html?#edchat", []),
        ("https://a.org and https://ex.org/faq.html?#edchat", []),
        ("https://a.org https://b.org #edchat", ["edchat"]),
        ("https://a.org https://b.org https://c.org/faq?#x #edchat", ["edchat"]),
        # A URL stops at the cap: a '#' right after it starts a tag.
        (CAPPED_URL + "#edchat", ["edchat"]),
        ("https://" + "a" * (URL_CAP - 1) + "##edchat", ["edchat"]),
    ],
)
# Several URLs before a '#' or '@' walk the skip pointer: a pointer stuck on one URL
# never ends, so a hang fails the test rather than stalling the run.
@pytest.mark.timeout(10)
def test_find_hashtags_edges(text: str, tags: list[str]) -> None:
    """One-letter tags, a '#' followed by a space, tags starting with a combining mark,
    fragments after '?' in the first or a later URL, and the URL length cap."""
    assert find_hashtags(text) == tags


# --- append_hashtag -----------------------------------------------------------------------


def test_append_keeps_text_that_has_tag_in_other_case() -> None:
    """Text already carrying the tag (any case, any punctuation after it) is unchanged."""
    for text in ("A1: yes! #EDCHAT", "#EdChat: A1 yes", "A1 yes (#edchat).", "A1 #edchat!!"):
        assert append_hashtag(text, "edchat") == text


def test_append_adds_tag_when_only_a_longer_tag_is_present() -> None:
    """'#edchatter' is another tag: the chat's tag is still appended."""
    assert append_hashtag("A1 #edchatter", "EdChat") == "A1 #edchatter #EdChat"


def test_append_after_trailing_punctuation() -> None:
    """Text ending in punctuation gets a space then the tag."""
    assert append_hashtag("Great question!", "edchat") == "Great question! #edchat"


def test_append_keeps_final_url_valid() -> None:
    """A text ending in a URL keeps the exact URL, separated from the tag by a space."""
    url = "https://example.org/a_(b)?q=1#frag"
    out = append_hashtag(f"read this {url}", "edchat")
    assert out == f"read this {url} #edchat"
    assert f'href="{url}"' in render_text(out)
    assert contains_hashtag(out, "edchat")


def test_append_when_tag_only_in_url_fragment() -> None:
    """A '#edchat' inside a URL does not count; the tag is appended after the URL."""
    assert append_hashtag("https://x.org/#edchat", "edchat") == "https://x.org/#edchat #edchat"


def test_append_strips_trailing_whitespace_but_keeps_inner() -> None:
    """Trailing spaces/newlines go; inner newlines and spacing stay as typed."""
    text = "  A1: first line\n\n  second  line \n\t \n"
    assert append_hashtag(text, "edchat") == "  A1: first line\n\n  second  line #edchat"


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_append_refuses_empty_text(text: str) -> None:
    """Empty or whitespace-only text raises ValueError('text is empty')."""
    with pytest.raises(ValueError) as caught:
        append_hashtag(text, "edchat")
    assert str(caught.value) == "text is empty"


def test_append_refuses_invalid_tag() -> None:
    """An invalid tag is refused rather than appended."""
    with pytest.raises(ValueError, match="only letters"):
        append_hashtag("hello", "ed chat")


def test_append_accepts_tag_with_hash() -> None:
    """A tag given as '#EdChat' is appended once, not as '##EdChat'."""
    assert append_hashtag("hello", "#EdChat") == "hello #EdChat"


# --- lengths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 5),
        (FAMILY, 1),
        (FLAG_NG, 1),
        (WAVE_DARK, 1),
        ("\U0001f3f3\ufe0f\u200d\U0001f308", 1),  # rainbow flag
        ("\U0001f469\U0001f3fe\u200d\U0001f4bb", 1),  # woman technologist, medium-dark
        ("caf" + E_ACUTE_DECOMPOSED, 4),
        ("a\u0308\u0301", 1),  # two combining marks on one letter
        ("हिन्दी", 3),
        (f"hi {FAMILY}{FLAG_NG}!", 6),
    ],
)
def test_count_graphemes(text: str, expected: int) -> None:
    """Emoji sequences, flags and combining characters count as one character each."""
    assert count_graphemes(text) == expected


def test_mastodon_length_weighs_urls_fixed() -> None:
    """Every http(s) URL counts 23 however long it is; the rest counts in graphemes."""
    short = "see http://a.io"
    long = "see https://example.org/" + "x" * 200 + "?q=1"
    assert mastodon_length(short) == 4 + 23
    assert mastodon_length(long) == 4 + 23
    assert mastodon_length(long + ".") == 4 + 23 + 1  # trailing full stop is not the URL's
    assert mastodon_length("a https://x.org b https://y.org") == len("a  b ") + 2 * 23
    assert mastodon_length("see http://a.io", url_weight=10) == 4 + 10


def test_mastodon_length_counts_remote_mention_as_local() -> None:
    """'@user@domain' counts as '@user'; a mention-like path inside a URL does not."""
    assert mastodon_length("@alice@example.social hi") == len("@alice hi")
    assert mastodon_length("@alice hi") == len("@alice hi")
    assert mastodon_length("cc @bob@sub.example.org, @carol") == len("cc @bob, @carol")
    assert mastodon_length("https://m.example/@alice@example.social") == 23
    assert mastodon_length("mail me@example.org") == len("mail me@example.org")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://x.org/#@alice@ex.social", 23),
        ("https://x.org/#@ann@ex.social @bob@ex.social", 23 + len(" @bob")),
        ("cc @ann https://x.org", len("cc @ann ") + 23),
        ("https://a.org @ann@ex.social", 23 + len(" @ann")),
        ("https://a.org https://b.org/#@ann@ex.social", 23 + 1 + 23),
        ("https://a.org https://b.org @ann@ex.social", 23 + 1 + 23 + len(" @ann")),
        # The URL stops at the cap; what follows is counted on its own.
        ("https://" + "a" * (URL_CAP + 1), 23 + 1),
        # A scheme with nothing after it but trimmed punctuation is no URL.
        ("not a link: https://. nor http://!", len("not a link: https://. nor http://!")),
        (CAPPED_URL + "@ann@ex.social", 23 + len("@ann")),
    ],
)
# Several URLs before a '#' or '@' walk the skip pointer: a pointer stuck on one URL
# never ends, so a hang fails the test rather than stalling the run.
@pytest.mark.timeout(10)
def test_mastodon_length_urls_and_mentions_together(text: str, expected: int) -> None:
    """An '@' inside a URL is the URL's, mentions before, between and after URLs count as
    '@user', and a longer URL ends at the cap."""
    assert mastodon_length(text) == expected


def test_mastodon_length_counts_emoji_as_one() -> None:
    """Emoji and flags weigh one each, as Mastodon counts grapheme clusters."""
    assert mastodon_length(f"{FAMILY} {FLAG_NG} {WAVE_DARK} #edchat") == 3 + 3 + len("#edchat")


# --- render_text --------------------------------------------------------------------------


def tag_link(tag: str) -> str:
    return f"https://m.example/tags/{tag}"


def test_render_text_escapes_markup() -> None:
    """Markup typed as text is shown as text, never interpreted."""
    out = render_text("<script>alert(1)</script> & <b>bold</b> \"quoted\" 'single'")
    assert "<script" not in out and "<b>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in out
    assert html_to_text(out) == "<script>alert(1)</script> & <b>bold</b> \"quoted\" 'single'"


def test_render_text_links_urls_tags_and_mentions() -> None:
    """URLs become safe links, #tags tag links, @mentions h-card spans."""
    out = render_text("A1 see https://ex.org/a?b=1&c=2. #EdChat cc @bob@ex.social", tag_link)
    assert out.startswith("<p>") and out.endswith("</p>")
    assert (
        '<a href="https://ex.org/a?b=1&amp;c=2" target="_blank" '
        'rel="nofollow noopener noreferrer">https://ex.org/a?b=1&amp;c=2</a>.'
    ) in out
    assert re.search(
        r'<a href="https://m\.example/tags/EdChat" class="mention hashtag"[^>]*>'
        r"#<span>EdChat</span></a>",
        out,
    )
    assert '<span class="h-card mention">@bob@ex.social</span>' in out


def test_render_text_without_tag_url_uses_span() -> None:
    """Without tag_url a hashtag is a span.hashtag, not a link."""
    out = render_text("hi #EdChat")
    assert out == '<p>hi <span class="hashtag">#<span>EdChat</span></span></p>'


def test_render_text_ignores_tags_inside_urls() -> None:
    """A '#fragment' stays part of its link and is not made a tag."""
    out = render_text("https://x.org/#edchat", tag_link)
    assert "hashtag" not in out
    assert 'href="https://x.org/#edchat"' in out


def test_render_text_paragraphs_and_line_breaks() -> None:
    """Blank lines separate paragraphs; single newlines become <br>."""
    out = render_text("one\ntwo\r\n\r\nthree\n\n\n")
    assert out == "<p>one<br>two</p><p>three</p>"
    assert render_text("") == ""
    assert render_text("\n \n") == ""


def test_render_text_is_stable_through_sanitizer() -> None:
    """Rendered text is already sanitized: sanitizing it again changes nothing."""
    text = "Q1: hi @ann & #EdChat <i>x</i>\nhttps://ex.org/(a) (https://ex.org/b)\n\nbye 🌱"
    out = render_text(text, tag_link)
    assert sanitize_html(out) == out
    assert html_to_text(out) == text


def test_render_text_refuses_relative_tag_url() -> None:
    """A tag_url that is not absolute http(s) is a programming error, not a silent dead link."""
    with pytest.raises(ValueError, match="absolute http"):
        render_text("#edchat", lambda tag: f"/tags/{tag}")
    with pytest.raises(ValueError, match="absolute http"):
        render_text("#edchat", lambda tag: "javascript:alert(1)")
    with pytest.raises(ValueError) as caught:
        render_text("#edchat", lambda tag: f"/tags/{tag}")
    assert str(caught.value) == ("tag_url must return an absolute http(s) URL, got '/tags/edchat'")


def hrefs(text: str) -> list[str]:
    """The link targets render_text makes of ``text`` (no tag links, no '&' in them)."""
    return re.findall(r'href="([^"]*)"', render_text(text))


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        (
            "see https://en.wikipedia.org/wiki/Fish_(food)",
            ["https://en.wikipedia.org/wiki/Fish_(food)"],
        ),
        (
            "(see https://en.wikipedia.org/wiki/Fish_(food))",
            ["https://en.wikipedia.org/wiki/Fish_(food)"],
        ),
        ("(https://ex.org/b)", ["https://ex.org/b"]),
        ("(slides: https://ex.org/ab)", ["https://ex.org/ab"]),
        ("notes https://ex.org/(a)))", ["https://ex.org/(a)"]),
        ("[https://ex.org/b]", ["https://ex.org/b"]),
        ("https://ex.org/list[1]", ["https://ex.org/list[1]"]),
        ("{https://ex.org/b}", ["https://ex.org/b"]),
        ("https://ex.org/{id}", ["https://ex.org/{id}"]),
        ("talk at https://ted.com/TEDX!", ["https://ted.com/TEDX"]),
        ("see http://a", ["http://a"]),
        ("see http://a.io", ["http://a.io"]),
        ("not a link: https://. nor http://!", []),
    ],
)
def test_render_text_url_ends(text: str, urls: list[str]) -> None:
    """Closing brackets without an opening one in the URL, and trailing punctuation, are
    left outside the link; balanced brackets stay; a scheme with nothing after is no link."""
    assert hrefs(text) == urls


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (
            "#EdChat and #edtech",
            '<p><span class="hashtag">#<span>EdChat</span></span> and '
            '<span class="hashtag">#<span>edtech</span></span></p>',
        ),
        ("one\r\ntwo", "<p>one<br>two</p>"),
        ("one\rtwo", "<p>one<br>two</p>"),
        ("Xmas launch by SpaceX", "<p>Xmas launch by SpaceX</p>"),
        ("not a link: https://. nor http://!", "<p>not a link: https://. nor http://!</p>"),
        ("\nXmas\n\nby SpaceX\n", "<p>Xmas</p><p>by SpaceX</p>"),
        (
            "@ann@ex.social\u00b2#edchat",
            '<p><span class="h-card mention">@ann@ex.social\u00b2</span>'
            '<span class="hashtag">#<span>edchat</span></span></p>',
        ),
    ],
)
def test_render_text_exact(text: str, html: str) -> None:
    """Every tag of a line is marked, old Mac and Windows line ends are line breaks, text
    is kept to its last letter, and a mention and a tag that touch are both marked."""
    assert render_text(text) == html


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("https://x.org/#@ann@ex.social", []),
        ("https://x.org/#@ann @bob", ["@bob"]),
        ("#edchat https://x.org/#@ann", []),
        ("https://a.org https://b.org/#@ann", []),
        ("https://a.org https://b.org @ann", ["@ann"]),
        (CAPPED_URL + "@ann", ["@ann"]),
    ],
)
def test_render_text_mentions_outside_links(text: str, mentions: list[str]) -> None:
    """An '@' inside a URL stays part of the link; mentions after it, and right after a
    URL cut at the length cap, are still marked."""
    out = render_text(text, tag_link)
    assert re.findall(r'<span class="h-card mention">([^<]*)</span>', out) == mentions


# --- html_to_text -------------------------------------------------------------------------


def test_html_to_text_decodes_and_breaks_lines() -> None:
    """Entities are decoded, <br> is a newline, paragraphs are separated by a blank line."""
    markup = "<p>Fish &amp; chips &lt;3 &#x1F41F;<br>next&nbsp;line</p><p>two</p>"
    assert html_to_text(markup) == "Fish & chips <3 \U0001f41f\nnext\xa0line\n\ntwo"


def test_html_to_text_of_mastodon_markup() -> None:
    """Mastodon's mention, tag and shortened-link markup reads as the original text."""
    markup = (
        '<p><span class="h-card"><a href="https://m.example/@ann" class="u-url mention">'
        '@<span>ann</span></a></span> read <a href="https://example.org/a/very/long/path">'
        '<span class="invisible">https://</span><span class="ellipsis">example.org/a/very'
        '</span><span class="invisible">/long/path</span></a> '
        '<a href="https://m.example/tags/edchat" class="mention hashtag" rel="tag">'
        "#<span>edchat</span></a></p>"
    )
    assert html_to_text(markup) == "@ann read https://example.org/a/very/long/path #edchat"


def test_html_to_text_drops_script_text() -> None:
    """Script and style contents never leak into the text, even from unsanitized markup."""
    assert html_to_text("<p>hi<script>alert(1)</script><style>p{}</style> there</p>") == (
        "hi there"
    )


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<blockquote>quoted</blockquote>reply", "quoted\n\nreply"),
        ("<pre>code</pre>after", "code\n\nafter"),
        ("<ul><li>one</li><li>two</li></ul>after", "one\ntwo\nafter"),
        ("<ol><li>one</li><li>two</li></ol>after", "one\ntwo\nafter"),
        ("<p>a<!-- hidden -->b</p>", "ab"),
        ("<p>a </p><p>b</p>", "a\n\nb"),
        ("<p>a</p><p></p><p> </p><p>b</p>", "a\n\nb"),
        ("<br>hi", "hi"),
        ("<p>SpaceX</p><p>Xmas</p>", "SpaceX\n\nXmas"),
        ("<p>one</p>\n<p>\t two</p>", "one\n\ntwo"),
    ],
)
def test_html_to_text_blocks(markup: str, text: str) -> None:
    """Quotes and preformatted blocks end a paragraph, list items are lines, comments
    vanish, blank lines collapse to one, and a line keeps its letters up to the last."""
    assert html_to_text(markup) == text


# --- clean_name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("Ann Lee", "Ann Lee"),
        (" \tAnn \n  Lee ", "Ann Lee"),
        ("Ann\u00a0Lee", "Ann Lee"),
        ("Ann\x00Lee", "AnnLee"),
        ("Ann\x1bLee", "AnnLee"),
        ("Ann\x7fLee", "AnnLee"),
        ("Ann\x80Lee", "AnnLee"),
        ("Ann\x9fLee", "AnnLee"),
        ("\u061cAnn", "Ann"),
        ("\u200eAnn\u200f", "Ann"),
        ("\u202aAnn\u202c", "Ann"),
        ("\u202eevil", "evil"),
        ("\u2066Ann\u2069", "Ann"),
        # Neighbours of the dropped ranges are kept: a hyphen, a deprecated format
        # character, and the zero-width joiner an emoji family is made of.
        ("Jean\u2010Luc", "Jean\u2010Luc"),
        ("Ann\u206aLee", "Ann\u206aLee"),
        (f"Ann {FAMILY}", f"Ann {FAMILY}"),
    ],
)
def test_clean_name(name: str, cleaned: str) -> None:
    """Control characters and bidi marks, embeddings, overrides and isolates go; whitespace
    runs become one space; everything else is kept."""
    assert clean_name(name) == cleaned


# --- several hashtags: split_hashtags / normalize_hashtags / contains_any_hashtag ---------


@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ("#A, #B C", ["#A", "#B", "C"]),
        ("TheChat;TheChat2026", ["TheChat", "TheChat2026"]),
        ("  one\t\ntwo ,, ; three  ", ["one", "two", "three"]),
        (" , ; ", []),
        ("", []),
        ("café-au-lait", ["café-au-lait"]),  # not a separator: left for the check to refuse
    ],
)
def test_split_hashtags_splits_on_spaces_commas_and_semicolons_only(raw, parts):
    assert split_hashtags(raw) == parts


def test_normalize_hashtags_keeps_order_and_spelling_and_refuses_naming_the_fault():
    assert normalize_hashtags(["#TheChat", "TheChat2026", "#café"], 5) == [
        "TheChat",
        "TheChat2026",
        "café",
    ]
    assert normalize_hashtags(iter(["a", "b"]), 2) == ["a", "b"]  # exactly the limit
    with pytest.raises(ValueError) as bad:
        normalize_hashtags(["ok", "#Ed Chat"], 5)
    assert str(bad.value) == (
        "tag 2 ('#Ed Chat'): hashtag may contain only letters, digits and underscore"
    )
    long = "x" * 45 + "!"  # the message quotes at most 40 characters of what was typed
    with pytest.raises(ValueError) as cut:
        normalize_hashtags([long], 5)
    assert str(cut.value).startswith(f"tag 1 ({'x' * 40!r}): ")
    with pytest.raises(ValueError) as twice:
        normalize_hashtags(["EdChat", "x", "#EDCHAT"], 5)
    assert str(twice.value) == "#EDCHAT is given twice (as #EdChat and #EDCHAT)"
    with pytest.raises(ValueError) as none:
        normalize_hashtags([], 5)
    assert str(none.value) == "give at least one hashtag"
    with pytest.raises(ValueError) as many:
        normalize_hashtags(["a", "b", "c"], 2)
    assert str(many.value) == "3 hashtags given; a chat follows at most 2"


@pytest.mark.parametrize(
    ("text", "tags", "expected"),
    [
        ("A1 yes #thechat2026", ["TheChat", "TheChat2026"], True),
        ("A1 yes #THECHAT", ["TheChat"], True),
        ("A1 yes #TheChatter", ["TheChat", "Other"], False),
        ("no tags here", ["TheChat"], False),
        ("#other #second", ["first", "#Second"], True),
        ("#first", [], False),
    ],
)
def test_contains_any_hashtag_matches_whole_tags_of_the_list(text, tags, expected):
    assert contains_any_hashtag(text, tags) is expected
