// The wall: the room on a projector. Same websocket and frames as the chat page; posts are
// drawn from their JSON with textContent (no HTML), the current question large on top.
// Reconnects the way the chat page does: backoff with jitter, resume from the last offset.

const version = new URL(import.meta.url).search;
const { el, markScripted } = await import(`./common.js${version}`);

markScripted();

const body = document.body;
const slug = body.dataset.slug;
const hashtag = body.dataset.hashtag || "";
const MAX_POSTS = Number(body.dataset.max) || 8;
const $ = (id) => document.getElementById(id);
const feed = $("wall-feed");
const empty = $("wall-empty");
const questionBox = $("wall-question");
const conn = $("wall-conn");

// Same timings as the chat page: first retry after ~0.5 s doubling to 15 s, and a link
// silent for three missed pings (20 s apart) is treated as dead.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 15000;
const SILENCE_LIMIT_MS = 65000;

const trailingTag = new RegExp(`\\s*#${hashtag.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`, "i");

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
// Live connection

const live = {
  offset: Number(body.dataset.offset) || 0,
  epoch: String(body.dataset.epoch ?? ""),
  socket: null,
  attempt: 0,
  retryTimer: 0,
  silenceTimer: 0,
  leaving: false,
};

const CONN_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

function setConn(state) {
  if (conn.dataset.state === state) return;
  conn.dataset.state = state;
  $("wall-conn-text").textContent = CONN_TEXT[state];
}

function applySnapshot(frame) {
  feed.replaceChildren();
  for (const item of (frame.posts || []).slice(0, MAX_POSTS).reverse()) placePost(item.post, { animate: false });
  pins = (frame.pins || []).map((item) => ({ is_question: Boolean(item.pin && item.pin.is_question), post: item.post }));
  showQuestion();
  syncEmpty();
  live.epoch = String(frame.epoch ?? "");
  if (typeof frame.offset === "number") live.offset = frame.offset;
}

function applyFrame(frame) {
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
    default:
      break; // notices, people: nothing to show on a wall
  }
}

function onFrame(frame) {
  if (!frame || typeof frame !== "object" || frame.type === "ping") return;
  if (frame.type === "snapshot") {
    applySnapshot(frame);
    return;
  }
  if (typeof frame.offset !== "number") return;
  if (frame.epoch !== undefined && String(frame.epoch) !== live.epoch) {
    // The room's history was rebuilt: reconnecting with the old epoch yields a snapshot.
    dropSocket();
    scheduleReconnect();
    return;
  }
  if (frame.offset <= live.offset) return;
  applyFrame(frame);
  live.offset = frame.offset;
}

function armSilenceTimer() {
  clearTimeout(live.silenceTimer);
  live.silenceTimer = setTimeout(() => {
    dropSocket();
    scheduleReconnect();
  }, SILENCE_LIMIT_MS);
}

function dropSocket() {
  clearTimeout(live.silenceTimer);
  const socket = live.socket;
  live.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) {
    try {
      socket.close(1000, "client reconnecting");
    } catch {
      // Already closing.
    }
  }
}

function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function scheduleReconnect() {
  clearTimeout(live.retryTimer);
  if (live.leaving) return;
  if (!navigator.onLine) {
    setConn("offline");
    return;
  }
  setConn("reconnecting");
  const delay = backoffDelay(live.attempt);
  live.attempt += 1;
  live.retryTimer = setTimeout(connect, delay);
}

function connect() {
  clearTimeout(live.retryTimer);
  if (live.socket || live.leaving) return;
  if (!navigator.onLine) {
    setConn("offline");
    return;
  }
  if (live.attempt === 0) setConn("connecting");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = `after=${live.offset}&epoch=${encodeURIComponent(live.epoch)}`;
  let socket;
  try {
    socket = new WebSocket(`${scheme}//${location.host}/api/chats/${encodeURIComponent(slug)}/live?${query}`);
  } catch {
    scheduleReconnect();
    return;
  }
  live.socket = socket;
  socket.addEventListener("open", () => {
    if (live.socket !== socket) return;
    setConn("live");
    armSilenceTimer();
  });
  socket.addEventListener("message", (event) => {
    if (live.socket !== socket) return;
    live.attempt = 0;
    setConn("live");
    armSilenceTimer();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    onFrame(frame);
  });
  socket.addEventListener("close", () => {
    if (live.socket !== socket) return;
    live.socket = null;
    clearTimeout(live.silenceTimer);
    scheduleReconnect();
  });
}

window.addEventListener("online", () => {
  live.attempt = 0;
  connect();
});
window.addEventListener("offline", () => {
  dropSocket();
  clearTimeout(live.retryTimer);
  setConn("offline");
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !live.socket) {
    live.attempt = 0;
    connect();
  }
});
window.addEventListener("pagehide", () => {
  live.leaving = true;
  clearTimeout(live.retryTimer);
  dropSocket();
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    live.leaving = false;
    live.attempt = 0;
    connect();
  }
});

syncEmpty();
connect();
