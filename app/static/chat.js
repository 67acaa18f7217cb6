// The chat room page: live feed over a websocket, composer, moderator actions.
// The page is complete before this runs; this keeps it live. Only server-rendered frame HTML
// (sanitized server-side) goes through innerHTML; everything else is built with textContent.

// Imported with this module's own ?v= so one asset version moves all files together.
const version = new URL(import.meta.url).search;
const { api, el, errorText, graphemeCount, graphemeTail, keepTimesFresh, markScripted, refreshTimes, store } =
  await import(`./common.js${version}`);
const { withHashtag } = await import(`./hashtag.js${version}`);

markScripted();

const body = document.body;
const slug = body.dataset.slug;
const hashtag = body.dataset.hashtag;
const apiBase = `/api/chats/${encodeURIComponent(slug)}`;
let limit = Number(body.dataset.limit) || 500;

const $ = (id) => document.getElementById(id);
const feed = $("feed");
const feedEmpty = $("feed-empty");
const pinsBar = $("pins");
const pinList = $("pin-list");
const pastBox = $("past-questions");
const pastList = $("past-list");
const pastCount = $("past-count");
const notices = $("notices");
const connState = $("conn-state");
const newPosts = $("new-posts");
const newPostsLabel = $("new-posts-label");

// A phone left open through a long chat must not grow the page without bound.
const MAX_POSTS = 400;
// Reconnect delays: first retry after ~0.5 s, doubling to a 15 s cap, jittered so a server
// restart is not met by every client at the same instant.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 15000;
// The server pings every 20 s by default; three missed pings means the link is dead even if
// the browser has not noticed (phones switching networks keep half-open sockets for minutes).
const SILENCE_LIMIT_MS = 65000;

// ---------------------------------------------------------------------------------------
// Rendering helpers

/** The first element of server-rendered, server-sanitized frame HTML. */
function fromHtml(html) {
  if (typeof html !== "string" || !html) return null;
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

function postId(value) {
  return /^\d+$/.test(String(value)) ? Number(value) : value;
}

function syncEmpty() {
  feedEmpty.hidden = feed.firstElementChild !== null;
  pinsBar.hidden = pinList.firstElementChild === null;
  pastBox.hidden = pastList.firstElementChild === null;
  pastCount.textContent = String(pastList.children.length);
}

/** Replaces `old` by `node`, keeping which <details> were open and where focus was. */
function swap(old, node) {
  const wasOpen = Array.from(old.querySelectorAll("details"), (d) => d.open);
  const details = node.querySelectorAll("details");
  if (details.length === wasOpen.length) details.forEach((d, i) => (d.open = wasOpen[i]));
  const hadFocus = old.contains(document.activeElement);
  old.replaceWith(node);
  if (hadFocus) node.focus({ preventScroll: true });
}

/**
 * Puts a post in the feed, or replaces it if present. The column is in arrival order, newest
 * first, like the server's snapshot (by post id), so a reload shows the same order.
 */
function placePost(html) {
  const node = fromHtml(html);
  if (!node || !node.id) return;
  refreshTimes(node);
  const existing = document.getElementById(node.id);
  if (existing && feed.contains(existing)) {
    swap(existing, node);
    return;
  }
  const id = Number(node.dataset.id);
  let before = null;
  for (const other of feed.children) {
    if (!(Number(other.dataset.id) > id)) {
      before = other;
      break;
    }
  }
  feed.insertBefore(node, before);
  node.classList.add("is-new");
  if (node === feed.firstElementChild) countUnseen();
  while (feed.children.length > MAX_POSTS) {
    const last = feed.lastElementChild;
    if (last.contains(document.activeElement)) break;
    last.remove();
  }
  syncEmpty();
}

function updatePost(html) {
  const node = fromHtml(html);
  if (!node || !node.id) return;
  const existing = document.getElementById(node.id);
  // An update for a post older than the column shows nothing new to this reader.
  if (existing && feed.contains(existing)) {
    refreshTimes(node);
    swap(existing, node);
  }
  const past = document.getElementById(`pastq-${node.dataset.id}`);
  if (past && node.dataset.question) {
    const chip = past.querySelector(".chip-q");
    if (chip) chip.textContent = `Q${node.dataset.question}`;
  }
}

function removePost(id) {
  const node = document.getElementById(`post-${id}`);
  if (node && feed.contains(node)) {
    const next = node.nextElementSibling || node.previousElementSibling;
    const hadFocus = node.contains(document.activeElement);
    node.remove();
    if (hadFocus && next) next.focus({ preventScroll: true });
  }
  // A post that is gone from the room is gone from the pinned bar too.
  document.getElementById(`pin-${id}`)?.remove();
  syncEmpty();
}

function pastEntry(post) {
  const text = String(post.text || "");
  return el(
    "li",
    { className: "past-q", id: `pastq-${post.id}`, "data-post-id": post.id },
    el(
      "a",
      { href: `#post-${post.id}` },
      post.question ? el("span", { className: "chip chip-q", text: `Q${post.question}` }) : null,
      post.question ? " " : null,
      el("span", { className: "past-q-text", text: text.length > 200 ? `${text.slice(0, 197)}…` : text }),
    ),
  );
}

function addPastQuestion(post) {
  if (!post || post.id === undefined || document.getElementById(`pastq-${post.id}`)) return;
  pastList.append(pastEntry(post));
}

function addPin(frame) {
  const node = fromHtml(frame.html);
  if (node && node.id) {
    const existing = document.getElementById(node.id);
    if (existing) swap(existing, node);
    else pinList.append(node); // oldest pin first, as the page renders them
  }
  if (frame.pin && frame.pin.is_question) addPastQuestion(frame.post);
  syncEmpty();
}

function removePin(id) {
  if (id === undefined || id === null) return;
  document.getElementById(`pin-${id}`)?.remove();
  syncEmpty();
}

const seenNotices = new Set();

/** Shows a dismissible notice above the feed. Server notices show once per page. */
function showNotice(text, { kind = "info", transientMs = 0 } = {}) {
  if (!text) return;
  if (kind === "info" && !transientMs) {
    if (seenNotices.has(text)) return;
    seenNotices.add(text);
  }
  const notice = el(
    "div",
    { className: `notice notice-${kind}` },
    el("p", { text }),
    el("button", { type: "button", className: "notice-dismiss", "aria-label": "Dismiss notice" }, "✕"),
  );
  notices.prepend(notice);
  if (transientMs) setTimeout(() => notice.remove(), transientMs);
}

notices.addEventListener("click", (event) => {
  const button = event.target.closest(".notice-dismiss");
  if (button) button.closest(".notice")?.remove();
});

// "↑ N new posts" for a reader scrolled down the column, so new posts do not go unnoticed.
let unseen = 0;

function scrolledAway() {
  return feed.getBoundingClientRect().top < -200;
}

function countUnseen() {
  if (!scrolledAway()) return;
  unseen += 1;
  newPostsLabel.textContent = `${unseen} new post${unseen === 1 ? "" : "s"}`;
  newPosts.hidden = false;
}

function clearUnseen() {
  unseen = 0;
  newPosts.hidden = true;
}

window.addEventListener("scroll", () => {
  if (unseen && !scrolledAway()) clearUnseen();
}, { passive: true });

newPosts.addEventListener("click", () => {
  clearUnseen();
  const first = feed.firstElementChild;
  if (first) {
    first.scrollIntoView({ block: "center" });
    first.focus({ preventScroll: true });
  }
});

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

const CONN_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

function setConn(state) {
  if (connState.dataset.state === state) return;
  connState.dataset.state = state;
  connState.querySelector(".conn-text").textContent = CONN_TEXT[state];
}

function applySnapshot(frame) {
  const reset = Boolean(frame.reset);
  const epoch = String(frame.epoch ?? "");
  if (frame.chat && Number(frame.chat.limit)) limit = Number(frame.chat.limit);
  const unchanged = !reset && epoch === live.epoch && frame.offset === live.offset;
  if (!unchanged) {
    feed.setAttribute("aria-busy", "true");
    const focusedId = feed.contains(document.activeElement) ? document.activeElement.closest(".post")?.id : null;
    const posts = (frame.posts || []).map((item) => fromHtml(item.html)).filter(Boolean);
    feed.replaceChildren(...posts);
    const pins = frame.pins || [];
    pinList.replaceChildren(...pins.map((item) => fromHtml(item.html)).filter(Boolean));
    if (Array.isArray(frame.past_questions)) {
      pastList.replaceChildren(...frame.past_questions.map((item) => pastEntry(item.post)));
    } else {
      for (const item of pins) if (item.pin && item.pin.is_question) addPastQuestion(item.post);
    }
    refreshTimes(feed);
    refreshTimes(pinList);
    if (focusedId) document.getElementById(focusedId)?.focus({ preventScroll: true });
    feed.setAttribute("aria-busy", "false");
    syncEmpty();
  }
  if (reset) showNotice("Caught up — showing the latest posts.", { transientMs: 8000 });
  live.epoch = epoch;
  if (typeof frame.offset === "number") live.offset = frame.offset;
}

function applyFrame(frame) {
  switch (frame.type) {
    case "post":
    case "unhide":
      placePost(frame.html);
      break;
    case "update":
      updatePost(frame.html);
      break;
    case "delete":
    case "hide":
      removePost(frame.post_id);
      break;
    case "pin":
      addPin(frame);
      break;
    case "unpin":
      removePin(frame.post_id ?? (frame.pin && frame.pin.post_id));
      break;
    default:
      break;
  }
}

function onFrame(frame) {
  if (!frame || typeof frame !== "object" || frame.type === "ping") return;
  if (frame.type === "snapshot") {
    applySnapshot(frame);
    return;
  }
  // Notices carry no state: show each text once, whatever its offset.
  if (frame.type === "notice") {
    showNotice(frame.text);
    if (typeof frame.offset === "number" && frame.offset > live.offset) live.offset = frame.offset;
    return;
  }
  if (typeof frame.offset !== "number") {
    applyFrame(frame);
    return;
  }
  if (frame.epoch !== undefined && String(frame.epoch) !== live.epoch) {
    // The room's history was rebuilt under us; reconnecting with our old epoch makes the
    // server answer with a fresh snapshot.
    dropSocket();
    scheduleReconnect();
    return;
  }
  if (frame.offset <= live.offset) return; // already applied (replay overlap)
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

/** Forgets the current socket at once; its late events are ignored. */
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
    setConn("offline"); // the "online" event reconnects
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
    socket = new WebSocket(`${scheme}//${location.host}${apiBase}/live?${query}`);
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
    // A frame, not just an accepted handshake, proves the link works: only then may the
    // next failure retry fast again.
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
  // Phones suspend background tabs; come back live at once instead of after the backoff.
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

// ---------------------------------------------------------------------------------------
// Composer

const form = $("composer");
const replyBox = $("reply-target");
const replyHandle = $("reply-handle");
const textArea = $("post-text");
let replyTo = null;

function setReply(target) {
  if (!form) return;
  replyTo = target;
  replyBox.hidden = !target;
  replyHandle.textContent = target ? `@${String(target.handle).replace(/^@/, "")}` : "";
}

if (form) {
  const nameInput = $("author");
  const counter = $("post-counter");
  const announce = $("counter-announce");
  const previewName = $("preview-name");
  const previewTail = $("preview-tail");
  const error = $("composer-error");
  const submit = $("post-submit");
  const draftKey = `hashroom.draft.${slug}`;
  let sending = false;
  let lastBand = "ok";

  if (!nameInput.value) nameInput.value = store.get("hashroom.name") || "";
  if (!textArea.value) textArea.value = store.get(draftKey) || "";

  const refreshComposer = () => {
    const text = textArea.value;
    const final = withHashtag(text, hashtag);
    const left = limit - graphemeCount(final);
    const band = left < 0 ? "over" : left <= 20 ? "warn" : "ok";
    counter.dataset.state = band;
    counter.textContent = left < 0 ? `${-left} over the limit` : `${left} left`;
    if (band !== lastBand) {
      announce.textContent = band === "ok" ? "" : counter.textContent;
      lastBand = band;
    }
    previewName.textContent = nameInput.value.trim() || "…";
    previewTail.textContent = text.trim() ? graphemeTail(final.trim(), 80) : `#${hashtag}`;
    return left;
  };

  const showError = (message) => {
    error.textContent = message;
  };

  textArea.addEventListener("input", () => {
    refreshComposer();
    store.set(draftKey, textArea.value);
  });
  nameInput.addEventListener("input", refreshComposer);
  nameInput.addEventListener("change", () => store.set("hashroom.name", nameInput.value.trim()));
  textArea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "Escape" && replyTo) {
      event.preventDefault();
      setReply(null);
    }
  });
  $("reply-cancel").addEventListener("click", () => {
    setReply(null);
    textArea.focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (sending) return;
    const author = nameInput.value.trim();
    const text = textArea.value;
    const left = refreshComposer();
    if (!author) {
      showError("Enter a display name first.");
      nameInput.focus();
      return;
    }
    if (!text.trim()) {
      showError("Write something first.");
      textArea.focus();
      return;
    }
    if (left < 0) {
      showError(`Your post is ${-left} characters too long (the limit is ${limit}, including #${hashtag}).`);
      textArea.focus();
      return;
    }
    showError("");
    sending = true;
    submit.setAttribute("aria-disabled", "true");
    submit.textContent = "Posting…";
    const response = await api("POST", `${apiBase}/posts`, {
      text,
      author,
      in_reply_to: replyTo ? postId(replyTo.id) : null,
    });
    sending = false;
    submit.removeAttribute("aria-disabled");
    submit.textContent = "Post";
    if (response.ok) {
      // The post itself arrives over the websocket, like everyone else's.
      textArea.value = "";
      store.set(draftKey, null);
      store.set("hashroom.name", author);
      setReply(null);
      refreshComposer();
      textArea.focus();
      return;
    }
    showError(errorText(response.status, response.data));
  });

  $("composer-fields").disabled = false;
  refreshComposer();
}

// ---------------------------------------------------------------------------------------
// Moderator tools

// Busy controls get aria-disabled, not disabled: disabling the focused button would drop
// keyboard focus to the page body.
function setBusy(button, busy) {
  if (busy) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
}

function isBusy(button) {
  return button.getAttribute("aria-disabled") === "true";
}

async function modAction(button, method, url, failure) {
  if (isBusy(button)) return;
  setBusy(button, true);
  const response = await api(method, url);
  setBusy(button, false);
  if (!response.ok) {
    showNotice(`${failure}: ${errorText(response.status, response.data)}`, { kind: "error", transientMs: 12000 });
  }
}

const askForm = $("ask-form");
if (askForm) {
  const askText = $("ask-text");
  const askError = $("ask-error");
  const askSubmit = $("ask-submit");
  askForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = askText.value.trim();
    if (!text) {
      askError.textContent = "Write the question first.";
      askText.focus();
      return;
    }
    if (isBusy(askSubmit)) return;
    setBusy(askSubmit, true);
    const response = await api("POST", `${apiBase}/questions`, { text });
    setBusy(askSubmit, false);
    if (response.ok) {
      askText.value = "";
      askError.textContent = "";
      return;
    }
    askError.textContent = errorText(response.status, response.data);
  });
  $("ask-fields").disabled = false;
}

// ---------------------------------------------------------------------------------------
// Post actions: one listener for the whole column, one for the pinned bar.

function replyToPost(article) {
  if (!form || !article) return;
  const button = article.querySelector(".act-reply");
  setReply({ id: article.dataset.id, handle: (button && button.dataset.handle) || article.dataset.author });
  form.scrollIntoView({ block: "nearest" });
  textArea.focus();
}

feed.addEventListener("click", (event) => {
  const button = event.target.closest("button.act");
  if (!button || !feed.contains(button)) return;
  const id = button.dataset.id;
  if (button.classList.contains("act-reply")) {
    replyToPost(button.closest(".post"));
  } else if (button.classList.contains("act-pin")) {
    modAction(button, "PUT", `${apiBase}/pins/${encodeURIComponent(id)}`, "Could not pin");
  } else if (button.classList.contains("act-hide")) {
    modAction(button, "PUT", `${apiBase}/hidden/${encodeURIComponent(id)}`, "Could not hide");
  }
});

pinList.addEventListener("click", (event) => {
  const button = event.target.closest("button.act-unpin");
  if (!button) return;
  const id = button.dataset.postId;
  modAction(button, "DELETE", `${apiBase}/pins/${encodeURIComponent(id)}`, "Could not unpin");
});

// The sticky pinned bar must not cover a post reached by its #post-N link.
if ("ResizeObserver" in window) {
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--pins-height", `${pinsBar.offsetHeight}px`);
  }).observe(pinsBar);
}

// ---------------------------------------------------------------------------------------
// Keyboard shortcuts (documented in the page footer)

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && replyTo && !event.defaultPrevented) {
    setReply(null);
    return;
  }
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
  const current = document.activeElement && document.activeElement.closest ? document.activeElement.closest(".post") : null;
  let target = null;
  if (event.key === "j") target = current && feed.contains(current) ? current.nextElementSibling : feed.firstElementChild;
  else if (event.key === "k") target = current && feed.contains(current) ? current.previousElementSibling : null;
  else if (event.key === "r" && current && form) {
    event.preventDefault();
    replyToPost(current);
    return;
  } else if (event.key === "/" && form) {
    event.preventDefault();
    textArea.focus();
    return;
  }
  if (target) {
    event.preventDefault();
    target.focus({ preventScroll: true });
    target.scrollIntoView({ block: "nearest" });
  }
});

// ---------------------------------------------------------------------------------------

keepTimesFresh(document, 30000);
syncEmpty();
connect();
