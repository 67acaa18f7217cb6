"""A corpus of varied posts and pins, and the golden HTML they render to (tests/render_golden.json).

Every network, every optional part of ``_post.html`` and ``_pin.html`` (media with and without
alt or preview, quotes, replies, reposts, content warnings, sensitive media, edits, hosts,
pending and hidden posts, question and answer numbers) and hostile input (markup in names,
``javascript:`` links, odd characters in URLs, long names, tricky unicode). The inputs are built
from real ``Post`` and ``Pin`` rows through ``post_json`` / ``pin_json``, as the rooms build them.

The golden file holds each input beside the HTML it rendered to when it was written, so a change
to the templates or the presenter that alters a single byte fails ``tests/test_render.py``.
Rewrite it only when the HTML is meant to change, and review the diff:

    .venv/bin/python -m tests.render_corpus --write
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.models import Pin, Post
from app.present import Presenter, pin_json, post_json
from app.templating import make_templates

GOLDEN = Path(__file__).with_name("render_golden.json")

T0 = datetime(2026, 11, 28, 9, 30, 5)
LONG_NAME = "Professor Dr. Maximiliane Wilhelmina von Hohenzollern-Sigmaringen " * 3
HOSTILE = '<script>alert("x")</script> & \'quoted\' "double" </article><img src=x onerror=alert(1)>'
UNICODE = "Zoë Ärnström \u202eevil\u202c \u200d👩‍👩‍👧 e\u0301 日本語 \u0000 \u2028 \ufeff"
ODD_URL = 'https://odd.example/p?a=1&b="2"&c=<3>#frag\'s ü%20space here'
SANITIZED = (
    '<p>Hello <span class="h-card"><a href="https://m.example/@bob" class="u-url mention">'
    '@<span>bob</span></a></span> <a href="https://m.example/tags/edchat" class="mention hashtag"'
    ' rel="tag">#<span>edchat</span></a></p><p>Second &amp; last</p>'
)


def _img(n: int, **extra: Any) -> dict[str, Any]:
    base = {
        "url": f"https://media.example/full/{n}.jpg",
        "preview_url": f"https://media.example/small/{n}.jpg",
        "alt": f"Picture {n}",
        "kind": "image",
    }
    return {**base, **extra}


def _post(n: int, network: str, **fields: Any) -> Post:
    """A stored post with plausible defaults for ``network``; ``fields`` override them."""
    values: dict[str, Any] = {
        "id": n,
        "chat_id": 1,
        "network": network,
        "remote_id": f"{network}-{n}",
        "author_name": "Tess Tester",
        "author_handle": "tess",
        "text": f"Post {n} about #edchat",
        "html": "",
        "created_at": T0 + timedelta(minutes=n),
    }
    values.update(fields)
    return Post(**values)


def cases() -> list[tuple[str, Post, dict[str, Any]]]:
    """(name, post, keyword arguments for post_json) for every corpus entry."""
    m_user = {
        "author_name": "Alice Mastodon",
        "author_handle": "alice@m.example",
        "author_avatar": "https://m.example/avatars/alice.png",
        "author_url": "https://m.example/@alice",
        "html": SANITIZED,
        "text": "Hello @bob #edchat\n\nSecond & last",
        "language": "en",
    }
    b_user = {
        "author_name": "Bea Sky",
        "author_handle": "bea.bsky.social",
        "author_avatar": "https://cdn.bsky.app/img/avatar/plain/did:plc:abc/bafy@jpeg",
        "author_url": "https://bsky.app/profile/did:plc:abc",
        "url": "https://bsky.app/profile/did:plc:abc/post/3kxyz",
        "html": '<p>Sky post <a href="https://bsky.app/hashtag/edchat">#edchat</a></p>',
        "text": "Sky post #edchat",
    }
    x_user = {
        "author_name": "Xavier",
        "author_handle": "xavier",
        "author_avatar": "https://pbs.twimg.com/profile_images/1/x_normal.jpg",
        "author_url": "https://x.com/xavier",
        "url": "https://x.com/xavier/status/1800000000000000001",
        "html": '<p>On X <a href="https://x.com/hashtag/edchat">#edchat</a></p>',
        "text": "On X #edchat",
    }
    out: list[tuple[str, Post, dict[str, Any]]] = []

    def add(name: str, post: Post, **kw: Any) -> None:
        out.append((name, post, kw))

    # native
    add("native-plain", _post(1, "native"))
    add("native-html", _post(2, "native", html="<p>Hi <strong>all</strong> #edchat</p>"))
    add("native-host", _post(3, "native"), is_host=True)
    add("native-question", _post(4, "native", question_number=3, text="What now? #edchat"))
    add(
        "native-answer-reply",
        _post(5, "native", answer_number=3, in_reply_to_id=4, reply_to_handle="tess"),
    )
    add("native-pending", _post(6, "native", pending=True))
    add("native-hidden", _post(7, "native", hidden=True))
    add("native-held", _post(8, "native", held=True))
    add("native-handle-only", _post(9, "native", author_name="", author_handle="@@weird"))
    add("native-nameless", _post(10, "native", author_name="", author_handle=""))
    add("native-long-name", _post(11, "native", author_name=LONG_NAME, author_handle="prof"))
    add(
        "native-hostile-name",
        _post(12, "native", author_name=HOSTILE, author_handle=HOSTILE, text=HOSTILE),
    )
    add("native-unicode", _post(13, "native", author_name=UNICODE, text=UNICODE))
    add("native-empty", _post(14, "native", text="", html=""))
    add("native-hostile-language", _post(15, "native", language='en"><script>x</script>'))
    add(
        "native-edited-microseconds",
        _post(
            16,
            "native",
            created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            edited_at=datetime(2026, 1, 2, 3, 14, 5, 1),
        ),
    )
    add(
        "native-everything",
        _post(
            17,
            "native",
            html="<p>All of it</p>",
            language="fr",
            question_number=7,
            answer_number=2,
            in_reply_to_id=3,
            reply_to_handle="@host",
            reposted_by_name="Rey Poster",
            reposted_by_handle="rey",
            spoiler_text="Spoilers",
            sensitive=True,
            media=[_img(1), _img(2, alt=None)],
            quote={
                "url": "https://q.example/1",
                "author": {"name": "Q", "handle": "q"},
                "text": "Q",
            },
            pending=True,
            hidden=True,
            edited_at=T0 + timedelta(hours=2),
        ),
        is_host=True,
    )
    add("native-question-zero", _post(18, "native", question_number=0, answer_number=0))
    add("native-parent-override", _post(19, "native", in_reply_to_id=4), parent_id=40)
    # demo
    add("demo-avatar", _post(20, "demo", author_avatar="https://demo.example/a.png"))
    add("demo-avatar-javascript", _post(21, "demo", author_avatar="javascript:alert(1)"))
    add("demo-avatar-data", _post(22, "demo", author_avatar="data:image/png;base64,AAAA"))
    add("demo-avatar-upper", _post(23, "demo", author_avatar="HTTPS://DEMO.EXAMPLE/A.PNG"))
    add("demo-avatar-empty", _post(24, "demo", author_avatar=""))
    add(
        "demo-reply-remote",
        _post(25, "demo", in_reply_to_remote="demo-1", reply_to_handle="bob@x.example"),
    )
    add("demo-reply-no-handle", _post(26, "demo", in_reply_to_id=5))
    add("demo-reply-remote-bare", _post(27, "demo", in_reply_to_remote="demo-2"))
    add("demo-reply-handle-only", _post(28, "demo", reply_to_handle="@carol"))
    # mastodon
    add("mastodon-status", _post(30, "mastodon", url="https://m.example/@alice/30", **m_user))
    add("mastodon-cw", _post(31, "mastodon", spoiler_text="Spoilers <b>ahead</b> & more", **m_user))
    add(
        "mastodon-sensitive",
        _post(32, "mastodon", sensitive=True, media=[_img(1), _img(2)], **m_user),
    )
    add(
        "mastodon-cw-sensitive",
        _post(33, "mastodon", sensitive=True, spoiler_text="CW", media=[_img(3)], **m_user),
    )
    add("mastodon-five-media", _post(34, "mastodon", media=[_img(i) for i in range(5)], **m_user))
    add(
        "mastodon-video",
        _post(35, "mastodon", media=[_img(5, kind="video", alt="A clip")], **m_user),
    )
    add(
        "mastodon-gifv-no-preview",
        _post(36, "mastodon", media=[_img(6, kind="gifv", preview_url=None)], **m_user),
    )
    add(
        "mastodon-audio-no-preview",
        _post(37, "mastodon", media=[_img(7, kind="audio", preview_url=None)], **m_user),
    )
    add(
        "mastodon-unknown-no-preview",
        _post(
            38,
            "mastodon",
            media=[_img(8, kind="unknown", preview_url=None, alt='A "file" <x>')],
            **m_user,
        ),
    )
    add(
        "mastodon-media-bad-urls",
        _post(
            39,
            "mastodon",
            media=[
                _img(9, url="javascript:alert(1)", preview_url="data:image/png;base64,AA"),
                _img(10, url="javascript:alert(1)", preview_url=None, kind="video"),
                _img(11, preview_url="javascript:alert(1)"),
                {"url": "ftp://files.example/x.bin", "kind": None},
                {"url": "https://files.example/y.bin", "kind": "", "alt": ""},
                {"url": "https://files.example/z.bin", "kind": None, "preview_url": None},
            ],
            **m_user,
        ),
    )
    add(
        "mastodon-media-no-kind",
        _post(40, "mastodon", media=[{"url": ODD_URL, "alt": HOSTILE}], **m_user),
    )
    quote_author = {"name": "Quin Quoted", "handle": "quin@q.example", "avatar": None}
    add(
        "mastodon-quote",
        _post(
            41,
            "mastodon",
            quote={"url": "https://q.example/@quin/1", "author": quote_author, "text": "Quoted"},
            **m_user,
        ),
    )
    add(
        "mastodon-quote-handle-only",
        _post(
            42,
            "mastodon",
            quote={"url": "https://q.example/2", "author": {"name": "", "handle": "quin"}},
            **m_user,
        ),
    )
    add(
        "mastodon-quote-long",
        _post(
            43,
            "mastodon",
            quote={"url": None, "author": quote_author, "text": ("long words here " * 40)},
            **m_user,
        ),
    )
    add(
        "mastodon-quote-author-string",
        _post(44, "mastodon", quote={"author": "Plain <Name>", "text": HOSTILE}, **m_user),
    )
    add(
        "mastodon-quote-bare",
        _post(45, "mastodon", quote={"author": None, "url": "javascript:alert(1)"}, **m_user),
    )
    add(
        "mastodon-quote-unbroken",
        _post(46, "mastodon", quote={"author": {}, "text": "x" * 450, "url": ODD_URL}, **m_user),
    )
    add("mastodon-edited", _post(47, "mastodon", edited_at=T0 + timedelta(days=1), **m_user))
    add(
        "mastodon-profile-javascript",
        _post(48, "mastodon", **{**m_user, "author_url": "javascript:alert(1)"}),
    )
    add("mastodon-odd-url", _post(49, "mastodon", url=ODD_URL, **{**m_user, "author_url": ODD_URL}))
    add(
        "mastodon-http-profile",
        _post(50, "mastodon", **{**m_user, "author_url": "http://plain.example/@alice"}),
    )
    add(
        "mastodon-repost",
        _post(51, "mastodon", reposted_by_name="Rey <b>Poster</b>", reposted_by_handle="rey@m.ex"),
    )
    add("mastodon-repost-handle", _post(52, "mastodon", reposted_by_handle="@rey", **m_user))
    add(
        "mastodon-non-string-url",
        _post(53, "mastodon", **{**m_user, "author_avatar": None, "author_url": None}),
    )
    # bluesky
    add("bluesky-plain", _post(60, "bluesky", **b_user))
    add(
        "bluesky-reply",
        _post(
            61,
            "bluesky",
            in_reply_to_remote="at://x/1",
            reply_to_handle="ann.bsky.social",
            **b_user,
        ),
    )
    add(
        "bluesky-quote",
        _post(
            62,
            "bluesky",
            quote={
                "uri": "at://did:plc:q/app.bsky.feed.post/1",
                "url": "https://bsky.app/profile/did:plc:q/post/1",
                "author": None,
                "text": None,
            },
            **b_user,
        ),
    )
    add(
        "bluesky-images",
        _post(
            63,
            "bluesky",
            media=[_img(12, alt='Line one\nline "two" & <three>'), _img(13, alt=None)],
            **b_user,
        ),
    )
    add(
        "bluesky-video",
        _post(64, "bluesky", media=[_img(14, kind="video", preview_url=None)], **b_user),
    )
    add(
        "bluesky-japanese",
        _post(65, "bluesky", language="ja", **{**b_user, "html": "", "text": "日本語のポスト"}),
    )
    add("bluesky-no-avatar", _post(66, "bluesky", **{**b_user, "author_avatar": None}))
    # x
    add("x-plain", _post(70, "x", **x_user))
    add("x-repost", _post(71, "x", reposted_by_name="Rita", reposted_by_handle="rita", **x_user))
    add(
        "x-quote",
        _post(
            72,
            "x",
            quote={
                "url": "https://x.com/q/status/1",
                "author": {"name": "Quoted X", "handle": "qx"},
                "text": "quoted tweet",
            },
            **x_user,
        ),
    )
    add("x-photos", _post(73, "x", media=[_img(15), _img(16), _img(17)], **x_user))
    add("x-gif", _post(74, "x", media=[_img(18, kind="gifv")], **x_user))
    add("x-unicode-name", _post(75, "x", **{**x_user, "author_name": UNICODE}))
    add("x-reply-question", _post(76, "x", in_reply_to_id=70, question_number=12, **x_user))
    # networks the labels do not know
    add("other-network", _post(80, "threads"))
    add("hostile-network", _post(81, 'we"ird<net>'))
    return out


def pin_cases() -> list[tuple[str, Pin, Post]]:
    """(name, pin, its post) for the pinned bar."""
    out = []
    posts = [
        ("pin-plain", False, _post(90, "native")),
        ("pin-question", True, _post(91, "native", question_number=4, text="Why? #edchat")),
        ("pin-cw", False, _post(92, "mastodon", spoiler_text="Spoilers <i>here</i>")),
        ("pin-long", True, _post(93, "x", text="word " * 80)),
        ("pin-unbroken", False, _post(94, "bluesky", text="y" * 300)),
        ("pin-nameless", False, _post(95, "demo", author_name="", author_handle="@@at")),
        ("pin-anonymous", False, _post(96, "demo", author_name="", author_handle="")),
        ("pin-hostile", True, _post(97, "native", author_name=HOSTILE, text=HOSTILE)),
        ("pin-unicode", False, _post(98, "native", author_name=UNICODE, text=UNICODE)),
        ("pin-empty", False, _post(99, "native", text="")),
    ]
    for n, (name, is_question, post) in enumerate(posts):
        pin = Pin(
            id=500 + n,
            chat_id=1,
            post_id=post.id,
            is_question=is_question,
            pinned_at=T0 + timedelta(minutes=n),
            unpinned_at=T0 + timedelta(hours=1) if n % 3 == 0 else None,
        )
        out.append((name, pin, post))
    return out


def build() -> dict[str, Any]:
    """The corpus inputs and the HTML the current templates render for them."""
    presenter = Presenter(make_templates().env)
    posts = []
    for name, post, kw in cases():
        data = post_json(post, **kw)
        posts.append({"name": name, "post": data, "html": presenter.post_html(data)})
    pins = []
    for name, pin, post in pin_cases():
        pdata, payload = post_json(post), pin_json(pin)
        pins.append(
            {
                "name": name,
                "pin": payload,
                "post": pdata,
                "html": presenter.pin_html(payload, pdata),
            }
        )
    return {"posts": posts, "pins": pins}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {GOLDEN.name}")
    args = parser.parse_args()
    golden = build()
    if args.write:
        text = json.dumps(golden, indent=1, ensure_ascii=False) + "\n"
        GOLDEN.write_text(text, encoding="utf-8")
    print(f"{len(golden['posts'])} posts, {len(golden['pins'])} pins")  # noqa: T201


if __name__ == "__main__":
    main()
