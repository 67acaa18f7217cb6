// The live column: which posts are on the page, which wait to be shown, which were unloaded.
//
// The column is a window onto the room, newest first, of at most MAX_NODES posts. New posts
// go to the top, or wait in `waiting` while the reader is held (paused, scrolled down, typing,
// or reading unloaded history); the "N new posts" pill shows them. Scrolling to the end loads
// older posts and unloads the newest ones out of view (their ids are kept, so scrolling back
// up loads them again). Every change that happens out of the reader's sight is compensated,
// so what they are looking at does not move.
//
// Only server-rendered, server-sanitized post HTML goes through innerHTML here.

const version = new URL(import.meta.url).search;
const { api, errorText } = await import(`./common.js${version}`);

// A phone left open through a long chat must stay fast: a few hundred articles at most.
export const MAX_NODES = 300;
// New posts kept while the reader is held. Past this the column only counts them and, when
// the reader asks for them, reloads the latest posts instead (a reader this far behind wants
// the present, not 2,000 posts inserted above them).
export const MAX_WAITING = 2000;
// Ids of posts unloaded from the top (numbers only, a few bytes each). Past this the column
// forgets them and "Go to the latest" reloads instead of paging back up.
const MAX_ABOVE = 10000;
const PAGE = 50;
// Posts in a reload of the latest: what a snapshot holds.
const LATEST = 60;
// Pages loaded in a row while the end of the column stays in view (a filter that hides most
// posts would otherwise page through the whole room); the reader's next scroll allows more.
const AUTO_PAGES = 6;
// How far from the top the column's start may scroll before new posts are held.
const HOLD_SLACK_PX = 80;
// Posts this close to the viewport are never unloaded.
const KEEP_NEAR_PX = 400;
// Start loading history this far before its end comes into view.
const PRELOAD_PX = 800;

/** The first element of server-rendered, server-sanitized HTML. */
export function fromHtml(html) {
  if (typeof html !== "string" || !html) return null;
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

const idOf = (node) => Number(node.dataset.id);

/** Replaces `old` by `node`, keeping which <details> were open and where focus was. */
export function swap(old, node) {
  const wasOpen = Array.from(old.querySelectorAll("details"), (d) => d.open);
  const details = node.querySelectorAll("details");
  if (details.length === wasOpen.length) details.forEach((d, i) => (d.open = wasOpen[i]));
  const hadFocus = old.contains(document.activeElement);
  old.replaceWith(node);
  if (hadFocus) node.focus({ preventScroll: true });
}

/** New posts not shown yet, in arrival order, counting those the reader's filters let through. */
class Waiting {
  constructor(hides) {
    this.hides = hides;
    this.entries = new Map(); // post id -> {item, shown: 0 | 1}
    this.shown = 0;
  }

  get size() {
    return this.entries.size;
  }

  has(id) {
    return this.entries.has(id);
  }

  get(id) {
    return this.entries.get(id)?.item;
  }

  set(id, item) {
    this.delete(id);
    const shown = this.hides(item.post) ? 0 : 1;
    this.entries.set(id, { item, shown });
    this.shown += shown;
  }

  delete(id) {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.shown -= entry.shown;
    this.entries.delete(id);
  }

  clear() {
    this.entries.clear();
    this.shown = 0;
  }

  /** Filters changed: count again. */
  recount() {
    this.shown = 0;
    for (const entry of this.entries.values()) {
      entry.shown = this.hides(entry.item.post) ? 0 : 1;
      this.shown += entry.shown;
    }
  }

  ids() {
    return Array.from(this.entries.keys());
  }

  items() {
    return Array.from(this.entries.values(), (entry) => entry.item);
  }
}

export class Column {
  /**
   * feed: the role=feed element. apiBase: "/api/chats/<slug>".
   * hooks.prepare(node): make a fresh post node ready (times, host mark, filters).
   * hooks.hides(post): true when the reader's filters hide this post JSON.
   * hooks.composing(): true while the reader types a post.
   * hooks.topInset(): px at the top of the viewport covered by sticky bars.
   * hooks.changed(): something the controls show changed (coalesced).
   * hooks.error(text): a load failed.
   */
  constructor(feed, apiBase, hooks) {
    this.feed = feed;
    this.apiBase = apiBase;
    this.hooks = hooks;
    this.waiting = new Waiting((post) => this.hooks.hides(post));
    this.uncounted = 0; // new posts beyond MAX_WAITING: counted, not kept
    this.stale = false; // `waiting` no longer holds every new post: revealing reloads
    this.above = []; // ids unloaded from the top; the last one is nearest to the column
    this.aboveLost = false;
    this.olderDone = false;
    this.olderLimit = 0; // a view that needs nothing older than this post id
    this.loading = { older: false, newer: false, latest: false };
    this.autoPages = 0;
    this.paused = false;
    this.slowMs = 0;
    this.lastReveal = -Infinity;
    this.slowTimer = 0;
    this.preserving = false;
    this.refreshing = null; // ids deleted while a reload of the latest is in flight
    this.notify = false;
    this.ownScrollY = -1;
  }

  // -- reading the column -------------------------------------------------------------------

  node(id) {
    const node = document.getElementById(`post-${id}`);
    return node && node.parentElement === this.feed ? node : null;
  }

  get size() {
    return this.feed.childElementCount;
  }

  topId() {
    const first = this.feed.firstElementChild;
    return first ? idOf(first) : 0;
  }

  bottomId() {
    const last = this.feed.lastElementChild;
    return last ? idOf(last) : 0;
  }

  atHead() {
    return this.above.length === 0 && !this.aboveLost;
  }

  /** True when the start of the column is scrolled out of view. */
  scrolledAway() {
    return this.feed.getBoundingClientRect().top < this.hooks.topInset() - HOLD_SLACK_PX;
  }

  /** Why new posts wait instead of showing: "paused", "history", "composing", "scrolled" or "". */
  heldBy() {
    if (this.paused) return "paused";
    if (!this.atHead()) return "history";
    if (this.hooks.composing()) return "composing";
    if (this.scrolledAway()) return "scrolled";
    return "";
  }

  /** New posts waiting that the reader's filters let through (past MAX_WAITING: all arrivals). */
  waitingCount() {
    return this.uncounted + this.waiting.shown;
  }

  hiddenCount() {
    let n = 0;
    for (const node of this.feed.children) if (node.hidden) n += 1;
    return n;
  }

  /** Posts shown (not hidden by filters), in column order. */
  shown() {
    return Array.from(this.feed.children).filter((node) => !node.hidden);
  }

  // -- live changes ---------------------------------------------------------------------------

  /** A new post, or one shown again (`post`/`unhide` frames). */
  receive(item) {
    const id = Number(item && item.post && item.post.id);
    if (!Number.isFinite(id)) return;
    const existing = this.node(id);
    if (existing) {
      this.replace(existing, item.html);
    } else if (this.waiting.has(id)) {
      this.waiting.set(id, item);
    } else if (this.size && id < this.topId()) {
      // An older post shown again: in place when it falls inside what is loaded.
      if (id > this.bottomId() || this.olderDone) this.insert([fromHtml(item.html)]);
    } else if (this.stale) {
      this.uncounted += 1;
    } else if (this.waiting.size >= MAX_WAITING) {
      this.uncounted = this.waiting.size + 1;
      this.waiting.clear();
      this.stale = true;
    } else {
      this.waiting.set(id, item);
    }
    this.pump();
  }

  /** A changed post (`update` frames): replaced where it is, on the page or waiting. */
  update(item) {
    const id = Number(item && item.post && item.post.id);
    const existing = this.node(id);
    if (existing) this.replace(existing, item.html);
    else if (this.waiting.has(id)) this.waiting.set(id, item);
    this.changed();
  }

  /** A post gone from the room (`delete`/`hide` frames). */
  remove(id) {
    id = Number(id);
    this.waiting.delete(id);
    if (this.refreshing) this.refreshing.add(id);
    const node = this.node(id);
    if (node) {
      const next = this.neighbour(node, 1) || this.neighbour(node, -1);
      const hadFocus = node.contains(document.activeElement);
      this.preserve(() => node.remove());
      if (hadFocus && next) next.focus({ preventScroll: true });
    }
    this.changed();
  }

  /** A snapshot: the room's latest posts replace the column, now or when the reader is back. */
  reset(items) {
    if (this.heldBy() && this.size) {
      // Do not pull the page from under a reader: the pill offers the latest instead.
      this.stale = true;
      this.waiting.clear();
      this.changed();
      return;
    }
    this.replaceAll(items, items.length >= LATEST);
  }

  replace(old, html) {
    const node = fromHtml(html);
    if (!node || !node.id) return;
    this.hooks.prepare(node);
    this.preserve(() => swap(old, node));
  }

  // -- holding and revealing ------------------------------------------------------------------

  setPaused(paused) {
    this.paused = paused;
    this.pump();
  }

  setSlow(seconds) {
    this.slowMs = Math.max(0, Number(seconds) || 0) * 1000;
    this.pump();
  }

  /** Shows waiting posts when nothing holds them: all at once, or one per slow-mode step. */
  pump() {
    clearTimeout(this.slowTimer);
    if (this.waiting.size && !this.stale && !this.heldBy()) {
      if (!this.slowMs) {
        this.reveal(this.waiting.size);
      } else {
        const wait = this.lastReveal + this.slowMs - performance.now();
        if (wait <= 0) this.reveal(1);
        if (this.waiting.size) this.slowTimer = setTimeout(() => this.pump(), wait > 0 ? wait : this.slowMs);
      }
    }
    this.changed();
  }

  /** The pill: every waiting post now, above the reader, without moving what they read. */
  async revealAll() {
    if (this.stale || !this.atHead()) {
      await this.latest();
      return true;
    }
    if (!this.waiting.size) return false;
    this.reveal(this.waiting.size);
    this.changed();
    return false;
  }

  reveal(n) {
    const ids = this.waiting.ids().sort((a, b) => a - b).slice(0, n);
    const nodes = ids.map((id) => {
      const item = this.waiting.get(id);
      this.waiting.delete(id);
      return fromHtml(item.html);
    });
    this.lastReveal = performance.now();
    this.insert(nodes, { busy: nodes.length > 1, fresh: true });
    this.trim("bottom");
  }

  // -- history ----------------------------------------------------------------------------------

  /** Loads the page of posts just older than the column's end. */
  async loadOlder({ auto = false } = {}) {
    if (this.loading.older || this.olderDone) return;
    if (auto && this.olderLimit && this.size && this.bottomId() <= this.olderLimit) return;
    const before = this.bottomId();
    if (!before) {
      this.olderDone = true;
      this.changed();
      return;
    }
    this.loading.older = true;
    this.changed();
    const response = await api("GET", `${this.apiBase}/posts?before=${before}&limit=${PAGE}`);
    this.loading.older = false;
    if (!response.ok) {
      this.hooks.error(`Could not load older posts: ${errorText(response.status, response.data)}`);
      this.changed();
      return;
    }
    if (this.bottomId() === before) {
      const nodes = (response.data.items || []).map((item) => fromHtml(item.html)).filter(Boolean);
      this.busy(() => {
        for (const node of nodes) {
          if (idOf(node) >= before || this.node(idOf(node))) continue;
          this.hooks.prepare(node);
          this.feed.append(node);
        }
      });
      this.olderDone = !response.data.more;
      this.trim("top");
    }
    this.changed();
    if (auto) {
      this.autoPages += 1;
      if (this.autoPages < AUTO_PAGES && this.nearEnd()) this.loadOlder({ auto: true });
    }
  }

  /** Loads back the posts unloaded just above the column's start. */
  async loadNewer({ auto = false } = {}) {
    if (this.loading.newer || !this.above.length) return;
    const take = this.above.slice(-PAGE);
    const top = this.topId();
    this.loading.newer = true;
    this.changed();
    const response = await api("GET", `${this.apiBase}/posts?before=${take[0] + 1}&limit=${take.length}`);
    this.loading.newer = false;
    if (!response.ok) {
      this.hooks.error(`Could not load newer posts: ${errorText(response.status, response.data)}`);
      this.changed();
      return;
    }
    if (this.topId() === top && this.above[this.above.length - take.length] === take[0]) {
      this.above.length -= take.length;
      const nodes = (response.data.items || [])
        .map((item) => fromHtml(item.html))
        .filter((node) => node && idOf(node) > top);
      this.insert(nodes, { busy: true, anchor: true });
      this.trim("bottom");
      if (this.atHead()) this.pump();
    }
    this.changed();
    if (auto) {
      this.autoPages += 1;
      if (this.autoPages < AUTO_PAGES && this.nearStart()) this.loadNewer({ auto: true });
    }
  }

  /** Replaces the column with the room's latest posts and scrolls to them. */
  async latest() {
    if (this.loading.latest) return;
    this.loading.latest = true;
    this.refreshing = new Set();
    this.changed();
    const response = await api("GET", `${this.apiBase}/posts?limit=${LATEST}`);
    const deleted = this.refreshing;
    this.refreshing = null;
    this.loading.latest = false;
    if (!response.ok) {
      this.hooks.error(`Could not load the latest posts: ${errorText(response.status, response.data)}`);
      this.changed();
      return;
    }
    const items = (response.data.items || []).filter((item) => !deleted.has(Number(item.post.id)));
    // Posts that arrived while the request was out are newer than its answer, or the same.
    const fetched = new Set(items.map((item) => Number(item.post.id)));
    const newer = this.waiting.items().filter((item) => !fetched.has(Number(item.post.id)));
    this.replaceAll([...newer, ...items], Boolean(response.data.more));
    const inset = this.hooks.topInset();
    const top = this.feed.getBoundingClientRect().top;
    if (top < inset) window.scrollBy(0, top - inset - 8);
    this.changed();
  }

  replaceAll(items, more) {
    const seen = new Set();
    const nodes = [];
    for (const item of items) {
      const node = fromHtml(item.html);
      if (!node || !node.id || seen.has(node.id)) continue;
      seen.add(node.id);
      this.hooks.prepare(node);
      nodes.push(node);
    }
    nodes.sort((a, b) => idOf(b) - idOf(a));
    const focusedId = this.feed.contains(document.activeElement) ? document.activeElement.closest(".post")?.id : null;
    this.busy(() => this.feed.replaceChildren(...nodes.slice(0, MAX_NODES)));
    if (focusedId) document.getElementById(focusedId)?.focus({ preventScroll: true });
    this.waiting.clear();
    this.uncounted = 0;
    this.stale = false;
    this.above = [];
    this.aboveLost = false;
    this.olderDone = !more && nodes.length <= MAX_NODES;
    this.autoPages = 0;
    this.pump();
  }

  nearEnd() {
    return this.feed.getBoundingClientRect().bottom < window.innerHeight + PRELOAD_PX;
  }

  nearStart() {
    return this.above.length > 0 && this.feed.getBoundingClientRect().top > -PRELOAD_PX;
  }

  /** The page scrolled: the reader may be back at the top, or want more history. */
  scrolled() {
    // Only the reader's own scrolling earns more automatic pages, not our compensations.
    if (Math.abs(window.scrollY - this.ownScrollY) > 1) this.autoPages = 0;
    // Called on every scrolled frame: only work when posts wait for the reader to come back.
    if (this.waiting.size) this.pump();
  }

  // -- filters ----------------------------------------------------------------------------------

  /** Re-applies the reader's filters to every post on the page. */
  refilter() {
    this.busy(() => {
      for (const node of this.feed.children) this.hooks.prepare(node);
    });
    this.waiting.recount();
    this.changed();
  }

  // -- moving between posts --------------------------------------------------------------------

  /** The next shown post after `node` (dir 1) or before it (dir -1). */
  neighbour(node, dir) {
    let next = dir > 0 ? node.nextElementSibling : node.previousElementSibling;
    while (next && next.hidden) next = dir > 0 ? next.nextElementSibling : next.previousElementSibling;
    return next;
  }

  first() {
    const first = this.feed.firstElementChild;
    return first && first.hidden ? this.neighbour(first, 1) : first;
  }

  // -- the machinery -----------------------------------------------------------------------------

  /**
   * Inserts post nodes where their ids belong (newest first). Out of the reader's sight the
   * inserted height is compensated, so what they look at stays where it is.
   */
  insert(nodes, { busy = false, anchor = false, fresh = false } = {}) {
    nodes = nodes.filter((node) => node && node.id && !this.node(idOf(node)));
    if (!nodes.length) return;
    for (const node of nodes) this.hooks.prepare(node);
    nodes.sort((a, b) => idOf(b) - idOf(a));
    const put = () => {
      let ref = this.feed.firstElementChild;
      for (const node of nodes) {
        const id = idOf(node);
        while (ref && idOf(ref) > id) ref = ref.nextElementSibling;
        this.feed.insertBefore(node, ref);
        if (fresh) node.classList.add("is-new");
      }
    };
    this.preserve(busy ? () => this.busy(put) : put, { force: anchor });
  }

  /** Keeps at most MAX_NODES posts, unloading from `prefer`'s end first, never near the view. */
  trim(prefer) {
    let excess = this.size - MAX_NODES;
    if (excess <= 0) return;
    const keep = this.keepSet();
    const canTop = this.scrolledAway();
    const canBottom = this.feed.getBoundingClientRect().bottom > window.innerHeight;
    const ends = prefer === "top" ? ["top", "bottom"] : ["bottom", "top"];
    this.preserve(() => {
      for (const end of ends) {
        if (end === "top" ? !canTop : !canBottom) continue;
        while (excess > 0) {
          const node = end === "top" ? this.feed.firstElementChild : this.feed.lastElementChild;
          if (!node || keep.has(node)) break;
          node.remove();
          excess -= 1;
          if (end === "bottom") {
            this.olderDone = false;
          } else {
            this.above.push(idOf(node));
            if (this.above.length > MAX_ABOVE) {
              // Forget the newest unloaded posts; "Go to the latest" reloads them.
              this.above.splice(0, this.above.length - MAX_ABOVE);
              this.aboveLost = true;
            }
          }
        }
      }
    });
  }

  /** Posts that must stay: those in or near the viewport, and the focused one. */
  keepSet() {
    const keep = new Set();
    const low = this.hooks.topInset() - KEEP_NEAR_PX;
    const high = window.innerHeight + KEEP_NEAR_PX;
    for (const node of this.feed.children) {
      if (node.hidden) continue;
      const rect = node.getBoundingClientRect();
      if (rect.bottom >= low && rect.top <= high) keep.add(node);
      else if (rect.top > high) break;
    }
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest(".post");
    if (focused && focused.parentElement === this.feed) keep.add(focused);
    return keep;
  }

  /**
   * Runs `mutate`; if the reader is scrolled into the column (or `force`), then scrolls by
   * however much the first post in view moved, so it stays put. The browser's own scroll
   * anchoring is off for the column (style.css) so this is the only adjustment.
   */
  preserve(mutate, { force = false } = {}) {
    if (this.preserving || !(force || this.scrolledAway())) {
      mutate();
      return;
    }
    this.preserving = true;
    try {
      const anchor = this.anchor();
      const before = anchor ? anchor.getBoundingClientRect().top : 0;
      mutate();
      if (anchor && anchor.isConnected) {
        const moved = anchor.getBoundingClientRect().top - before;
        if (Math.abs(moved) >= 1) {
          window.scrollBy(0, moved);
          this.ownScrollY = window.scrollY;
        }
      }
    } finally {
      this.preserving = false;
    }
  }

  /** The first shown post whose bottom is below the sticky bars, or what follows the column. */
  anchor() {
    const inset = this.hooks.topInset();
    for (const node of this.feed.children) {
      if (node.hidden) continue;
      if (node.getBoundingClientRect().bottom > inset) return node;
    }
    return this.feed.nextElementSibling;
  }

  /** Marks the feed busy around a bulk change, so screen readers announce it once. */
  busy(fn) {
    this.feed.setAttribute("aria-busy", "true");
    try {
      fn();
    } finally {
      this.feed.setAttribute("aria-busy", "false");
    }
  }

  changed() {
    if (this.notify) return;
    this.notify = true;
    queueMicrotask(() => {
      this.notify = false;
      this.hooks.changed();
    });
  }
}
