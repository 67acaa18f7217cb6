"""Reading several hashtags' timelines as one: the tags grouped into requests (Mastodon reads
at most :data:`~app.networks.mastodon.client.TAGS_PER_REQUEST` per request) and the merge of
the groups' pages that skips no post and repeats none."""

from __future__ import annotations

from typing import Any

from .client import TAGS_PER_REQUEST
from .mapping import str_or_none

Page = list[dict[str, Any]]


def tag_groups(tags: list[str]) -> list[list[str]]:
    """``tags`` in order, cut into groups of one request each."""
    return [tags[i : i + TAGS_PER_REQUEST] for i in range(0, len(tags), TAGS_PER_REQUEST)]


def id_order(status_id: str) -> tuple[int, str]:
    """Sort key of a status id. Ids are opaque strings, but Mastodon's are decimal numbers
    without leading zeros, for which (length, text) is numeric order."""
    return (len(status_id), status_id)


def merge_pages(pages: list[tuple[Page, bool]], *, forward: bool) -> tuple[Page, bool]:
    """The groups' answers to one question — each (page newest first, whether it was full) —
    as one page newest first, and whether more may follow (some page was full).

    A full group page covers only part of the range, so the merge keeps what every group has
    covered: paging ``forward`` (``min_id``), up to the lowest newest id of a full page;
    otherwise (newest or ``max_id``), down to the highest oldest id of a full page. The next
    request continues from there. Statuses are merged by id; a lone page is returned as is.
    """
    if len(pages) == 1:
        return pages[0]
    merged: dict[str, dict[str, Any]] = {}
    for page, _full in pages:
        for status in page:
            if (sid := str_or_none(status.get("id"))) is not None:
                merged.setdefault(sid, status)
    ids = sorted(merged, key=id_order, reverse=True)
    full = [page for page, is_full in pages if is_full and page]
    if full and forward:
        edge = min(id_order(str_or_none(p[0].get("id")) or "") for p in full)
        ids = [i for i in ids if id_order(i) <= edge]
    elif full:
        edge = max(id_order(str_or_none(p[-1].get("id")) or "") for p in full)
        ids = [i for i in ids if id_order(i) >= edge]
    return [merged[i] for i in ids], bool(full)
