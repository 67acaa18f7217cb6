// The room's hashtag rule, mirrored from app/text.py so the composer can count exactly what
// the server will store: the tag is appended as " #tag" unless the text already carries it.

// Letters with their combining marks, decimal digits, underscore (text.py: _is_tag_char).
const TAG_CHAR = /[\p{L}\p{M}\p{Nd}_]/u;
const MARK = /^\p{M}/u;
const ALL_DIGITS = /^\p{Nd}+$/u;
// A '#' glued to these is not a tag: URL paths, query strings, markdown links.
const NOT_BEFORE_TAG = new Set(["/", "=", ")"]);
const URL_RE = /https?:\/\/[^\s<>"]+/giu;
const URL_TRAILING = ".,:;!?'\"*";
const BRACKETS = { ")": "(", "]": "[", "}": "{" };

function count(text, ch) {
  return text.split(ch).length - 1;
}

function trimUrl(url) {
  while (url) {
    const last = url[url.length - 1];
    if (URL_TRAILING.includes(last)) url = url.slice(0, -1);
    else if (last in BRACKETS && count(url, last) > count(url, BRACKETS[last])) url = url.slice(0, -1);
    else break;
  }
  return url;
}

function urlSpans(text) {
  const spans = [];
  for (const m of text.matchAll(URL_RE)) {
    const url = trimUrl(m[0]);
    if (url.length > url.split("://")[0].length + 3) spans.push([m.index, m.index + url.length]);
  }
  return spans;
}

/** The hashtags written in `text` (without '#'), ignoring those inside URLs. */
export function findHashtags(text) {
  text = text.normalize("NFC");
  const skip = urlSpans(text);
  const chars = Array.from(text);
  // Work on code points, as Python does, so indexes line up with the URL spans' code units.
  const tags = [];
  let unit = 0;
  const unitAt = [];
  for (const ch of chars) {
    unitAt.push(unit);
    unit += ch.length;
  }
  for (let i = 0; i < chars.length; i += 1) {
    if (chars[i] !== "#") continue;
    const at = unitAt[i];
    if (skip.some(([a, b]) => a <= at && at < b)) continue;
    const prev = i ? chars[i - 1] : "";
    let j = i + 1;
    while (j < chars.length && TAG_CHAR.test(chars[j])) j += 1;
    const tag = chars.slice(i + 1, j).join("");
    const okBefore = !prev || !(TAG_CHAR.test(prev) || NOT_BEFORE_TAG.has(prev));
    if (okBefore && tag && !MARK.test(tag) && !ALL_DIGITS.test(tag)) tags.push(tag);
    i = Math.max(j, i + 1) - 1;
  }
  return tags;
}

/** Case-insensitive key of a tag, close to Python's casefold ("Straße" equals "STRASSE"). */
export function tagKey(tag) {
  return tag.replace(/^#/, "").normalize("NFC").toUpperCase().toLowerCase();
}

/** True when `text` already carries `#tag` as a whole tag. */
export function containsHashtag(text, tag) {
  const key = tagKey(tag);
  return findHashtags(text).some((found) => tagKey(found) === key);
}

/** The text as the server will store it: unchanged if tagged, else with " #tag" appended. */
export function withHashtag(text, tag) {
  return containsHashtag(text, tag) ? text : `${text.trimEnd()} #${tag}`;
}
