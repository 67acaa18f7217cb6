"""X's weighted post length, from the ``twitter-text-parser`` library.

X counts a post in *weighted* characters (limit 280): most Latin text weighs 1, CJK and emoji
weigh 2, every URL weighs 23 whatever its length. ``twitter-text-parser`` implements
twitter-text v3 and passes its conformance tests, so Hashroom uses it instead of copying the
ranges by hand.

The library reads its emoji list with ``pkg_resources``, which is part of setuptools and is no
longer installed with every Python (nor kept in new setuptools). When it is missing, a
one-function stand-in reading the same file through :mod:`importlib.resources` is installed
before the import; it is never used for anything else.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import re
import sys
import types

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23


def _shim_pkg_resources() -> None:
    if sys.modules.get("pkg_resources") is not None or importlib.util.find_spec("pkg_resources"):
        return

    def resource_string(module: str, name: str) -> bytes:
        # Like pkg_resources: ``name`` is relative to the module's own package.
        spec = importlib.util.find_spec(module)
        package = module if spec and spec.submodule_search_locations else module.rpartition(".")[0]
        return importlib.resources.files(package).joinpath(name).read_bytes()

    shim = types.ModuleType("pkg_resources")
    shim.resource_string = resource_string  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim


_shim_pkg_resources()

from twitter_text import parse_tweet  # noqa: E402  (needs the shim above first)

# twitter-text's URL pattern (the same in every port) backtracks badly on long runs of
# dotted labels ("a.a.a.a…": 2 s for 800 characters, minutes for 10,000). URLs never span
# whitespace and real domain names have few labels, so the text is counted piece by piece:
# whitespace-separated words, long words cut into slices, and runs of more than
# ``MAX_LABELS`` dotted labels cut between labels. That keeps every count linear in the
# text and equal to the library's for any text a person would post; only an absurd
# "domain" (more than a dozen labels) or a link longer than ``MAX_PIECE`` characters may
# count differently from X (then X's own check answers when posting).
MAX_LABELS = 12
MAX_PIECE = 500
_PIECES = re.compile(r"\s+|\S+")
_LABEL_RUN = re.compile(r"(?:[^\s./]*\.){" + str(MAX_LABELS) + "}")


def _slices(word: str) -> list[str]:
    out: list[str] = []
    pos = 0
    for m in _LABEL_RUN.finditer(word):
        out.append(word[pos : m.end()])
        pos = m.end()
    out.append(word[pos:])
    return [
        piece[i : i + MAX_PIECE] for piece in out if piece for i in range(0, len(piece), MAX_PIECE)
    ]


def weighted_length(text: str) -> int:
    """The length X gives ``text`` (twitter-text v3 rules: URLs 23, CJK and emoji 2),
    computed in time linear in the text (see above)."""
    total = 0
    for m in _PIECES.finditer(text):
        piece = m.group()
        if piece.isspace():
            total += parse_tweet(piece).weightedLength
            continue
        total += sum(parse_tweet(part).weightedLength for part in _slices(piece))
    return total
