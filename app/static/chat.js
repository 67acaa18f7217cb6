// The chat room page: live feed over a websocket, composer, moderator actions, and the
// reading controls (pause, slow mode, filters, views, questions, display, shortcuts).
// The page is complete before this runs; this keeps it live. The column itself is feed.js;
// filters.js, questions.js, prefs.js and keys.js own their panels. Only server-rendered frame
// HTML (sanitized server-side) goes through innerHTML; everything else uses textContent.

// Imported with this module's own ?v= so one asset version moves all files together; all at
// once, so the page does not wait for one file after another.
const version = new URL(import.meta.url).search;
const [common, hashtagRules, feedModule, filterModule, questionModule, prefsModule, keysModule, liveModule, offlineModule, notifyModule] =
  await Promise.all(
    ["common", "hashtag", "feed", "filters", "questions", "prefs", "keys", "live", "offline", "notify"].map((name) =>
      import(`./${name}.js${version}`),
    ),
  );
const { api, apiFrom, el, errorText, graphemeCount, graphemeTail, isBusy, keepTimesFresh, markScripted, refreshTimes, store } =
  common;
const { withHashtag } = hashtagRules;
const { Column, fromHtml, swap } = feedModule;
const { Filters, nodeFacts, normHandle, postFacts, setupFilterPanel, setupPostMenu } = filterModule;
const { setupAnswerPrefix, setupQuestions } = questionModule;
const { setupDisplay } = prefsModule;
const { setupKeys } = keysModule;
const { followLive } = liveModule;
const { keepForOffline, registerWorker } = offlineModule;
const { setupNotify } = notifyModule;

markScripted();

const body = document.body;
const slug = body.dataset.slug;
// The reply tag: what the composer adds. A moderator may change it (a `hashtags` frame).
let hashtag = body.dataset.hashtag;
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
let pageTitle = document.title; // "#tags · title · Hashroom"; the unread count goes first

// ---------------------------------------------------------------------------------------
// Rendering helpers

function postId(value) {
  return /^\d+$/.test(String(value)) ? Number(value) : value;
}

function syncEmpty() {
  feedEmpty.hidden = feed.firstElementChild !== null;
  pinsBar.hidden = pinList.firstElementChild === null;
  pastBox.hidden = pastList.firstElementChild === null;
  pastCount.textContent = String(pastList.children.length);
}

/** A post changed: its entry in the past questions follows its new number. */
function updatePast(item) {
  const post = item && item.post;
  if (!post || !post.question) return;
  const chip = document.getElementById(`pastq-${post.id}`)?.querySelector(".chip-q");
  if (chip) chip.textContent = `Q${post.question}`;
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

// ---------------------------------------------------------------------------------------
// Live frames (the connection itself is live.js)

/** A snapshot replaces the column unless it is the state the page already shows. */
function applySnapshot(frame, known) {
  const reset = Boolean(frame.reset);
  const epoch = String(frame.epoch ?? "");
  if (frame.chat && Number(frame.chat.limit)) limit = Number(frame.chat.limit);
  if (frame.chat && Array.isArray(frame.chat.hashtags)) applyHashtags(frame.chat);
  const unchanged = !reset && epoch === known.epoch && frame.offset === known.offset;
  if (!unchanged) {
    column.reset(frame.posts || []);
    const pins = frame.pins || [];
    pinList.replaceChildren(...pins.map((item) => fromHtml(item.html)).filter(Boolean));
    if (Array.isArray(frame.past_questions)) {
      pastList.replaceChildren(...frame.past_questions.map((item) => pastEntry(item.post)));
    } else {
      for (const item of pins) if (item.pin && item.pin.is_question) addPastQuestion(item.post);
    }
    refreshTimes(pinList);
    syncEmpty();
  }
  if (reset) showNotice("Caught up — showing the latest posts.", { transientMs: 8000 });
}

function applyFrame(frame) {
  switch (frame.type) {
    case "post":
    case "unhide":
      column.receive(frame);
      break;
    case "update":
      column.update(frame);
      updatePast(frame);
      break;
    case "delete":
    case "hide":
      column.remove(frame.post_id);
      // A post that is gone from the room is gone from the pinned bar too.
      document.getElementById(`pin-${frame.post_id}`)?.remove();
      syncEmpty();
      break;
    case "pin":
      addPin(frame);
      break;
    case "unpin":
      removePin(frame.post_id ?? (frame.pin && frame.pin.post_id));
      break;
    case "people":
      applyPeople(frame.people);
      break;
    case "hashtags":
      applyHashtags(frame);
      break;
    default:
      break;
  }
}

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
  // "Post as" a network account (_accounts.html, accounts.js): its id, handle and limit.
  const account = $("account-id");
  const asAccount = () => (account && account.value ? account : null);
  const maxLength = () => Number(asAccount()?.dataset.limit) || limit;
  let lastBand = "ok";

  if (!nameInput.value) nameInput.value = store.get("hashroom.name") || "";
  if (!textArea.value) textArea.value = store.get(draftKey) || "";

  // X counts in weighted characters (links 23, CJK and emoji 2). The server counts with
  // the twitter-text library; until its answer for the current text arrives, the last
  // answer plus the graphemes typed since stands in.
  let weighed = null;
  let countTimer = null;
  const networkOf = () => asAccount()?.dataset.network || "";
  const lengthOf = (final) => {
    if (networkOf() !== "x") return graphemeCount(final);
    if (weighed && weighed.text === final) return weighed.length;
    clearTimeout(countTimer);
    countTimer = setTimeout(async () => {
      const response = await api("POST", "/api/length", { network: "x", text: final });
      if (response.ok && typeof response.data?.length === "number") {
        weighed = { text: final, length: response.data.length };
        refreshComposer();
      }
    }, 150);
    return weighed ? Math.max(0, weighed.length + graphemeCount(final) - graphemeCount(weighed.text)) : graphemeCount(final);
  };

  const refreshComposer = () => {
    const text = textArea.value;
    const final = withHashtag(text, hashtag);
    const left = maxLength() - lengthOf(final);
    counter.dataset.rule = networkOf() === "x" ? "x-weighted" : "graphemes";
    const band = left < 0 ? "over" : left <= 20 ? "warn" : "ok";
    counter.dataset.state = band;
    counter.textContent = left < 0 ? `${-left} over the limit` : `${left} left`;
    if (band !== lastBand) {
      announce.textContent = band === "ok" ? "" : counter.textContent;
      lastBand = band;
    }
    previewName.textContent = asAccount()?.dataset.handle || nameInput.value.trim() || "…";
    previewTail.textContent = text.trim() ? graphemeTail(final.trim(), 80) : `#${hashtag}`;
    return left;
  };

  const fallbacks = $("composer-fallbacks");
  const showError = (message) => {
    error.textContent = message;
    if (!message && fallbacks) fallbacks.hidden = true;
  };
  // A reply the network refused by its own rule (X, since February 2026): offer a quote
  // post with the tag, or the network's own reply page; a reply whose target the account's
  // server cannot find: offer the same text as a plain post. The typed text stays either way.
  const offerFallbacks = (found) => {
    if (!fallbacks) return;
    $("fallback-plain").hidden = !found.without_reply;
    const intent = $("fallback-intent");
    intent.hidden = !found.intent_url;
    if (found.intent_url) intent.href = found.intent_url;
    $("fallback-quote").dataset.quoteOf = found.quote_of ? String(found.quote_of) : "";
    $("fallback-quote").hidden = !found.quote_of;
    fallbacks.hidden = false;
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

  $("fallback-plain")?.addEventListener("click", () => {
    setReply(null);
    form.requestSubmit();
  });

  let quoteOf = null;
  $("fallback-quote")?.addEventListener("click", () => {
    quoteOf = Number($("fallback-quote").dataset.quoteOf) || null;
    setReply(null);
    form.requestSubmit();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (isBusy(submit)) return;
    const quoting = quoteOf;
    quoteOf = null;
    const author = nameInput.value.trim();
    const text = textArea.value;
    const left = refreshComposer();
    if (!author && !asAccount()) {
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
      showError(`Your post is ${-left} characters too long (the limit is ${maxLength()}, including #${hashtag}).`);
      textArea.focus();
      return;
    }
    showError("");
    submit.textContent = "Posting…";
    const response = await apiFrom(submit, "POST", `${apiBase}/posts`, {
      text,
      author,
      in_reply_to: replyTo ? postId(replyTo.id) : null,
      ...(asAccount() ? { account_id: Number(account.value) } : {}),
      ...(quoting ? { quote_of: quoting } : {}),
    });
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
    const found = response.data?.detail?.fallbacks;
    if ((response.status === 403 || response.status === 422) && found) offerFallbacks(found);
  });

  $("composer-fields").disabled = false;
  refreshComposer();
}

// ---------------------------------------------------------------------------------------
// Moderator tools

async function modAction(button, method, url, failure) {
  const response = await apiFrom(button, method, url);
  if (response && !response.ok) {
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
    const response = await apiFrom(askSubmit, "POST", `${apiBase}/questions`, { text });
    if (!response) return; // already sending
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

// Esc cancels a reply from anywhere on the page (other shortcuts: keys.js).
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && replyTo && !event.defaultPrevented) setReply(null);
});

// ---------------------------------------------------------------------------------------
// People: hosts and guests named by moderators mark their posts. Posts arrive marked as the
// server knew them; a `people` frame changes the mark live.

// "network:handle" keys ("*" for every network), lower case, no "@". `removed` remembers
// names taken off the list, whose posts lose the mark (a post the server marks for another
// reason — the host of the demo, a moderator's question — keeps it until reloaded).
const people = { hosts: null, removed: new Set() };

function personKeys(list) {
  const keys = new Set();
  for (const person of Array.isArray(list) ? list : []) {
    if (person && (person.role === "host" || person.role === "guest") && normHandle(person.handle)) {
      keys.add(`${person.network || "*"}:${normHandle(person.handle)}`);
    }
  }
  return keys;
}

function listed(keys, handle, network) {
  const h = normHandle(handle);
  return Boolean(keys && h && (keys.has(`*:${h}`) || keys.has(`${network}:${h}`)));
}

/** Shows the tags the room follows ({hashtag, hashtags}) in the header, the title and the
 * composer's hints; the composer adds the (maybe new) reply tag from now on. */
function applyHashtags({ hashtag: replyTag, hashtags }) {
  const tags = (Array.isArray(hashtags) ? hashtags : [replyTag]).filter((t) => typeof t === "string" && t);
  if (!tags.length) return;
  const box = $("room-tags");
  if (box) {
    const spans = tags.map((tag) => el("span", { className: "room-tag", text: `#${tag}` }));
    box.replaceChildren(...spans.flatMap((span, i) => (i ? [" ", span] : [span])));
  }
  const modInput = $("mod-tags-input");
  if (modInput && document.activeElement !== modInput) modInput.value = tags.join(" ");
  const modCount = $("mod-tags-count");
  if (modCount) modCount.textContent = String(tags.length);
  const previous = hashtag;
  hashtag = replyTag || tags[0];
  body.dataset.hashtag = hashtag;
  const titled = pageTitle.replace(/^#.*? · /, `#${tags.join(" #")} · `);
  document.title = document.title.replace(pageTitle, titled);
  pageTitle = titled;
  feed.setAttribute("aria-label", `Posts tagged #${tags.join(" or #")}, newest first`);
  if (previous === hashtag) return;
  const hint = $("composer-hint");
  if (hint) hint.textContent = hint.textContent.replace(`#${previous}`, `#${hashtag}`);
  const heading = $("composer-heading");
  if (heading) heading.textContent = `Post to #${hashtag}`;
  $("post-text")?.dispatchEvent(new Event("input"));
}

function applyPeople(list) {
  const next = personKeys(list);
  if (people.hosts) for (const key of people.hosts) if (!next.has(key)) people.removed.add(key);
  for (const key of next) people.removed.delete(key);
  people.hosts = next;
  column.refilter();
}

/** The host mark of a post's article, following the latest list of hosts and guests. */
function markHost(node) {
  if (!people.hosts) return;
  const { author, network } = node.dataset;
  const on = listed(people.hosts, author, network) ? true : listed(people.removed, author, network) ? false : null;
  if (on === null || node.classList.contains("is-host") === on) return;
  node.classList.toggle("is-host", on);
  const badge = node.querySelector(".post-head .badge.host");
  if (on && !badge) node.querySelector(".post-author")?.after(" ", el("span", { className: "badge host", text: "Host" }));
  if (!on && badge) badge.remove();
}

function isHostPost(post) {
  const handle = post.author && post.author.handle;
  if (listed(people.hosts, handle, post.network)) return true;
  return Boolean(post.is_host) && !listed(people.removed, handle, post.network);
}

// The server's list as the page opened, so a later removal knows whose mark to take away.
api("GET", `${apiBase}/people`).then((response) => {
  if (response.ok && response.data && Array.isArray(response.data.people) && !people.hosts) {
    people.hosts = personKeys(response.data.people);
  }
});

// ---------------------------------------------------------------------------------------
// Reading: the column, pause and slow mode, filters and views, questions, display, keys.

const filters = new Filters(slug);
const pauseButton = $("pause-toggle");
const hostsButton = $("hosts-toggle");
const readingStatus = $("reading-status");
const viewBar = $("view-bar");
const viewText = $("view-text");
const filterNote = $("filter-note");
const filterNoteText = $("filter-note-text");
const filtersCount = $("filters-count");
const newerBox = $("newer");
const loadNewerButton = $("load-newer");
const olderBox = $("older");
const olderStatus = $("older-status");
const loadOlderButton = $("load-older");

function prepare(node) {
  refreshTimes(node);
  markHost(node);
  const hidden = filters.hides(nodeFacts(node));
  if (node.hidden !== hidden) node.hidden = hidden;
}

// On a phone the room bar stays at the top too (style.css); elsewhere it scrolls away.
const roomHead = document.querySelector(".room-head");
function stickyHeadBottom() {
  return getComputedStyle(roomHead).position === "sticky" ? roomHead.getBoundingClientRect().bottom : 0;
}

const column = new Column(feed, apiBase, {
  prepare,
  hides: (post) => filters.hides(postFacts(post, isHostPost(post))),
  // Held while the reader writes, so the column does not jump under the composer.
  composing: () => Boolean(form && form.contains(document.activeElement) && textArea.value.trim()),
  topInset: () => Math.max(0, pinsBar.hidden ? 0 : pinsBar.getBoundingClientRect().bottom, stickyHeadBottom()),
  changed: renderReading,
  error: (text) => showNotice(text, { kind: "error", transientMs: 12000 }),
});

function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** Brings every control that reflects the column up to date (called once per change burst). */
function renderReading() {
  // The bars above the column change height; a reader scrolled into it must not feel that.
  column.preserve(renderControls);
}

function renderControls() {
  const count = column.waitingCount();
  // After a reconnect far behind, the count is unknown: the pill then loads the latest.
  const label = count ? plural(count, "new post", "new posts") : "New posts";
  newPosts.hidden = count === 0 && !column.stale;
  if (newPostsLabel.textContent !== label) newPostsLabel.textContent = label;
  document.title = count ? `(${count.toLocaleString()}) ${pageTitle}` : pageTitle;

  pauseButton.setAttribute("aria-pressed", String(column.paused));
  hostsButton.setAttribute("aria-pressed", String(filters.hostsOnly));

  const active = filters.count();
  filtersCount.hidden = !active;
  filtersCount.textContent = String(active);
  filterNote.hidden = !active;
  if (active) {
    let hidden = 0;
    for (const node of feed.children) if (node.hidden && filters.hides(nodeFacts(node), { views: false })) hidden += 1;
    filterNoteText.textContent = `${plural(hidden, "post", "posts")} hidden by your filters.`;
  }

  const q = filters.question;
  viewBar.hidden = q === null && !filters.hostsOnly;
  if (!viewBar.hidden) {
    let text = filters.hostsOnly ? "Showing hosts only" : "";
    if (q !== null) {
      const group = questions.group(q);
      const total = group ? Number(group.count ?? (group.answers || []).length) || 0 : null;
      text = `Showing ${filters.hostsOnly ? "hosts’ " : ""}answers to Q${q}`;
      if (total !== null) text += ` (${plural(total, "answer", "answers")} in all)`;
    }
    viewText.textContent = text;
  }

  feedEmpty.hidden = feed.firstElementChild !== null;
  newerBox.hidden = column.atHead();
  loadNewerButton.hidden = !column.above.length;
  loadNewerButton.textContent = column.loading.newer ? "Loading newer posts…" : "Load newer posts";
  loadOlderButton.hidden = column.olderDone;
  loadOlderButton.textContent = column.loading.older ? "Loading older posts…" : "Load older posts";
  olderStatus.textContent = column.olderDone && feed.firstElementChild ? "This is the start of the chat." : "";
}

function setPaused(paused) {
  column.setPaused(paused);
  readingStatus.textContent = paused ? "Paused: new posts wait until you resume." : "Resumed.";
  renderReading();
}

/** The pill (and "."): every waiting post, or the latest posts when far behind. */
async function revealNew() {
  const hadFocus = document.activeElement === newPosts;
  const jumped = await column.revealAll();
  if (hadFocus || jumped) column.first()?.focus({ preventScroll: !jumped });
}

pauseButton.addEventListener("click", () => setPaused(!column.paused));
hostsButton.addEventListener("click", () => filters.change((f) => (f.hostsOnly = !f.hostsOnly)));
newPosts.addEventListener("click", revealNew);
$("jump-latest").addEventListener("click", async () => {
  await column.latest();
  column.first()?.focus({ preventScroll: true });
});
loadNewerButton.addEventListener("click", () => column.loadNewer());
loadOlderButton.addEventListener("click", () => column.loadOlder());
$("view-clear").addEventListener("click", () => {
  filters.change((f) => {
    f.question = null;
    f.hostsOnly = false;
  });
  column.first()?.focus({ preventScroll: true });
});

let scrollQueued = false;
window.addEventListener(
  "scroll",
  () => {
    if (scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => {
      scrollQueued = false;
      column.scrolled();
    });
  },
  { passive: true },
);

if (form) {
  // Typing holds new posts; leaving the composer (or sending) lets them in.
  textArea.addEventListener("input", () => column.pump());
  form.addEventListener("focusout", () => setTimeout(() => column.pump(), 0));
}

// History loads as its edge comes near; the buttons remain for keyboards and old browsers.
if ("IntersectionObserver" in window) {
  const near = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        if (entry.target === olderBox) column.loadOlder({ auto: true });
        else column.loadNewer({ auto: true });
      }
    },
    { rootMargin: "800px 0px" },
  );
  near.observe(olderBox);
  near.observe(newerBox);
}

// Panels: one open at a time, each behind its toolbar button.
const panels = {
  "questions-toggle": $("questions-panel"),
  "filters-toggle": $("filters-panel"),
  "display-toggle": $("display-panel"),
};

function openPanel(toggleId) {
  for (const [id, panel] of Object.entries(panels)) {
    const open = id === toggleId;
    panel.hidden = !open;
    $(id).setAttribute("aria-expanded", String(open));
  }
  if (toggleId === "questions-toggle") questions.opened();
}

for (const id of Object.keys(panels)) {
  $(id).addEventListener("click", () => openPanel($(id).getAttribute("aria-expanded") === "true" ? null : id));
}
$("filter-note-edit").addEventListener("click", () => {
  openPanel("filters-toggle");
  $("hide-reposts").focus();
});

function showQuestion(n) {
  filters.change((f) => (f.question = n));
  openPanel(null);
  viewBar.focus({ preventScroll: true });
  viewBar.scrollIntoView({ block: "nearest" });
}

const questions = setupQuestions({
  apiBase,
  hashtag,
  panel: panels["questions-toggle"],
  list: $("questions-list"),
  status: $("questions-status"),
  filters,
  showQuestion,
});

/** A question view needs nothing older than its question's post. */
function viewLimit() {
  const group = filters.question === null ? null : questions.group(filters.question);
  column.olderLimit = group && group.question ? Number(group.question.id) || 0 : 0;
}

questions.onGroups(() => {
  viewLimit();
  renderReading();
});
filters.onChange(() => {
  viewLimit();
  column.refilter();
});
if (filters.question !== null) questions.load();

setupFilterPanel(panels["filters-toggle"], filters);
setupPostMenu(feed, $("post-menu"), {
  filters,
  showQuestion,
  postHidden: (post) => (column.neighbour(post, 1) || column.neighbour(post, -1))?.focus({ preventScroll: true }),
});
setupDisplay(panels["display-toggle"], { onSlow: (seconds) => column.setSlow(seconds) });
setupAnswerPrefix({
  button: $("answer-prefix"),
  text: $("answer-prefix-text"),
  hint: $("answer-prefix-hint"),
  pinList,
  textArea,
});
setupKeys({
  column,
  dialog: $("keys-dialog"),
  opener: $("keys-open"),
  list: $("keys-list"),
  actions: {
    reply: form ? replyToPost : null,
    pause: () => setPaused(!column.paused),
    compose: form
      ? () => {
          form.scrollIntoView({ block: "nearest" });
          textArea.focus();
        }
      : null,
    reveal: revealNew,
  },
});

for (const node of feed.children) prepare(node);
feed.classList.add("is-ready");

// ---------------------------------------------------------------------------------------

// Relative times change width as they age ("just now" → "12 min ago"); above a reader
// scrolled into the column that must not move what they read.
keepTimesFresh(document, 30000, (refresh) => column.preserve(refresh));
syncEmpty();
// A change above the reader's view (pins, notices) does not move it.
followLive({
  slug,
  offset: body.dataset.offset,
  epoch: body.dataset.epoch,
  status: connState,
  statusText: connState.querySelector(".conn-text"),
  snapshot: (frame, known) => column.preserve(() => applySnapshot(frame, known)),
  frame: (frame) => {
    column.preserve(() => applyFrame(frame));
    questions.frameSeen(frame);
  },
  notice: (frame) => column.preserve(() => showNotice(frame.text)),
});

// The installed app: this room opens offline with the posts it last had (sw.js), and the
// reader may ask to be notified.
keepForOffline(version);
setupNotify({
  slug,
  csrf: body.dataset.csrf,
  root: $("notify"),
  register: () => registerWorker(version),
});
