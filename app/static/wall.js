// The wall: the room on a projector. Same websocket and frames as the chat page; posts are
// drawn from their JSON with textContent (no HTML), the current question large on top.
// The connection (backoff with jitter, resume from the last offset) is live.js, as there.

const version = new URL(import.meta.url).search;
const [{ el, markScripted }, { followLive }] = await Promise.all(
  ["common", "live"].map((name) => import(`./${name}.js${version}`)),
);

markScripted();

const body = document.body;
const slug = body.dataset.slug;
const escapeTag = (tag) => tag.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const MAX_POSTS = Number(body.dataset.max) || 8;
const $ = (id) => document.getElementById(id);
const feed = $("wall-feed");
const empty = $("wall-empty");
const questionBox = $("wall-question");
const conn = $("wall-conn");

// A trailing tag of the room is noise on a projector: every post carries one.
let trailingTag = tagPattern((body.dataset.hashtags || body.dataset.hashtag || "").split(" "));

function tagPattern(tags) {
  return new RegExp(`\\s*#(?:${tags.filter(Boolean).map(escapeTag).join("|")})\\s*$`, "i");
}

/** What the wall shows of a post (the server's wall_text, for live posts). */
function wallText(post) {
  if (post.spoiler_text) return `Content warning: ${post.spoiler_text}`;
  const text = String(post.text || "");
  return text.replace(trailingTag, "").trim() || text;
}

function authorName(post) {
  const a = post.author || {};
  return a.name || String(a.handle || "").replace(/^@/, "") || "Someone";
}

// ---------------------------------------------------------------------------------------
// The current question: the newest pinned question, else the newest pin.

/** Pinned posts, oldest pin first: {is_question, post}. */
let pins = [];
try {
  pins = JSON.parse(questionBox.dataset.pins || "[]");
} catch {
  pins = [];
}

function showQuestion() {
  const current = [...pins].reverse().find((p) => p.is_question) || pins[pins.length - 1];
  if (!current) {
    questionBox.hidden = true;
    $("wall-q-text").removeAttribute("data-post-id");
    return;
  }
  const post = current.post;
  $("wall-q-label").textContent = post.question ? `Q${post.question}` : "Pinned";
  const text = $("wall-q-text");
  text.textContent = wallText(post);
  text.dataset.postId = post.id;
  $("wall-q-by").textContent = authorName(post);
  questionBox.hidden = false;
}

function setPin(isQuestion, post) {
  pins = pins.filter((p) => p.post.id !== post.id);
  pins.push({ is_question: Boolean(isQuestion), post });
  showQuestion();
}

function dropPin(postId) {
  const before = pins.length;
  pins = pins.filter((p) => p.post.id !== postId);
  if (pins.length !== before) showQuestion();
}

function refreshPinned(post) {
  const found = pins.find((p) => p.post.id === post.id);
  if (found) {
    found.post = post;
    showQuestion();
  }
}

// ---------------------------------------------------------------------------------------
// The stream of posts, newest first.

function postNode(post) {
  const chip = post.question
    ? el("span", { className: "wall-chip wall-chip-q", text: `Q${post.question}` })
    : post.answer
      ? el("span", { className: "wall-chip wall-chip-a", text: `A${post.answer}` })
      : null;
  return el(
    "li",
    { className: `wall-post${post.is_host ? " is-host" : ""}`, id: `wall-post-${post.id}`, "data-id": post.id },
    el(
      "p",
      { className: "wall-who" },
      el("span", { className: "wall-author", text: authorName(post) }),
      post.is_host ? " " : null,
      post.is_host ? el("span", { className: "wall-badge", text: "Host" }) : null,
      chip ? " " : null,
      chip,
    ),
    el("p", { className: "wall-text", text: wallText(post) }),
  );
}

function syncEmpty() {
  empty.hidden = feed.firstElementChild !== null;
}

function placePost(post, { animate = true } = {}) {
  if (!post || post.id === undefined) return;
  const node = postNode(post);
  const existing = $(`wall-post-${post.id}`);
  if (existing) {
    existing.replaceWith(node);
    return;
  }
  let before = null;
  for (const other of feed.children) {
    if (Number(other.dataset.id) < Number(post.id)) {
      before = other;
      break;
    }
  }
  if (!before && feed.children.length >= MAX_POSTS) return; // older than everything shown
  feed.insertBefore(node, before);
  if (animate) node.classList.add("is-new");
  while (feed.children.length > MAX_POSTS) feed.lastElementChild.remove();
  syncEmpty();
}

function updatePost(post) {
  if (!post) return;
  if ($(`wall-post-${post.id}`)) placePost(post);
  refreshPinned(post);
}

function removePost(postId) {
  $(`wall-post-${postId}`)?.remove();
  dropPin(postId);
  syncEmpty();
}

// ---------------------------------------------------------------------------------------
// Live frames (the connection itself is live.js)

function applySnapshot(frame) {
  feed.replaceChildren();
  for (const item of (frame.posts || []).slice(0, MAX_POSTS).reverse()) placePost(item.post, { animate: false });
  pins = (frame.pins || []).map((item) => ({ is_question: Boolean(item.pin && item.pin.is_question), post: item.post }));
  showQuestion();
  syncEmpty();
}

// ---------------------------------------------------------------------------------------
// Top questions (?top=N): the most voted open questions, reloaded when votes, answered marks
// or pins change (at most once per TOP_REFRESH_MS).

const topBox = $("wall-top");
const TOP_REFRESH_MS = 1500;
const TOP_FRAMES = new Set(["vote", "answered", "pin", "unpin", "delete", "hide", "unhide", "update"]);
let topTimer = 0;

async function loadTop() {
  topTimer = 0;
  let data;
  try {
    const response = await fetch(`/api/chats/${encodeURIComponent(slug)}/questions?sort=votes&state=open`, {
      headers: { Accept: "application/json" },
      credentials: "omit", // the wall's own votes are none: no voter id needed
    });
    if (!response.ok) return;
    data = await response.json();
  } catch {
    return; // offline: the next change or reconnect tries again
  }
  const top = (data.questions || []).slice(0, Number(topBox.dataset.top) || 3);
  $("wall-top-list").replaceChildren(
    ...top.map((q) =>
      el(
        "li",
        { className: "wall-top-item", "data-post-id": q.post.id },
        el("span", { className: "wall-top-votes", text: `▲ ${q.votes}` }),
        " ",
        el("span", { className: "wall-top-text", text: wallText(q.post) }),
      ),
    ),
  );
  topBox.hidden = top.length === 0;
}

function topChanged() {
  if (topBox && !topTimer) topTimer = setTimeout(loadTop, TOP_REFRESH_MS);
}

function applyFrame(frame) {
  if (TOP_FRAMES.has(frame.type) || (frame.post && frame.post.question)) topChanged();
  switch (frame.type) {
    case "post":
    case "unhide":
      placePost(frame.post);
      break;
    case "update":
      updatePost(frame.post);
      break;
    case "delete":
    case "hide":
      removePost(frame.post_id);
      break;
    case "pin":
      if (frame.post) setPin(frame.pin && frame.pin.is_question, frame.post);
      break;
    case "unpin":
      dropPin(frame.post_id ?? (frame.pin && frame.pin.post_id));
      break;
    case "hashtags":
      if (Array.isArray(frame.hashtags) && frame.hashtags.length) {
        $("wall-tags").textContent = `#${frame.hashtags.join(" #")}`;
        trailingTag = tagPattern(frame.hashtags);
      }
      break;
    default:
      break; // notices, people: nothing to show on a wall
  }
}

syncEmpty();
followLive({
  slug,
  offset: body.dataset.offset,
  epoch: body.dataset.epoch,
  status: conn,
  statusText: $("wall-conn-text"),
  snapshot: (frame) => {
    applySnapshot(frame);
    topChanged();
  },
  frame: applyFrame,
});
