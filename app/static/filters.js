// Per-viewer filters and views of the column. Filters (hide reposts / replies to posts outside
// the room, muted people, muted words, "only these people") are saved per room in this
// browser; filters and views (hosts only, answers to one question) are mirrored in the page
// address, so a filtered view can be shared: ?hide=reposts,replies&mute=@bob&words=spoiler
// &only=@maya,@zoe&view=hosts&q=3. A shared address wins over what this browser saved.

const version = new URL(import.meta.url).search;
const { el, store, copyText } = await import(`./common.js${version}`);

const KEYS = ["hide", "mute", "words", "only", "view", "q"];
const HIDE_KINDS = ["reposts", "replies"];
const MAX_ITEMS = 200; // per list: a long list in a URL helps nobody
const ITEM_CHARS = 100;

/** A handle as compared: trimmed, no leading "@", lower case ("@Maya" → "maya"). */
export function normHandle(handle) {
  return String(handle || "").trim().replace(/^@+/, "").toLowerCase();
}

function normWord(word) {
  return String(word || "").trim().replace(/\s+/g, " ").toLowerCase();
}

function number(value) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

function unique(list, norm) {
  const out = [];
  for (const raw of list) {
    const item = norm(raw).slice(0, ITEM_CHARS);
    if (item && !out.includes(item)) out.push(item);
  }
  return out.slice(0, MAX_ITEMS);
}

const escapeRe = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
// "@" and "," stay readable in shared addresses; everything else is encoded.
const enc = (text) => encodeURIComponent(text).replace(/%40/g, "@");

/** What filters look at, read from a post's article. */
export function nodeFacts(node) {
  return {
    author: normHandle(node.dataset.author),
    reposter: normHandle(node.dataset.repostedBy),
    repost: node.classList.contains("is-repost") || node.querySelector(".post-context.repost") !== null,
    replyOutside: node.classList.contains("is-reply") && !node.dataset.replyTo,
    host: node.classList.contains("is-host"),
    question: number(node.dataset.question),
    answer: number(node.dataset.answer),
    text: () =>
      Array.from(node.querySelectorAll(".post-content, .cw > summary, .quote-text"), (part) => part.textContent).join(" "),
  };
}

/** What filters look at, read from a post's JSON (posts waiting to be shown). */
export function postFacts(post, isHost) {
  const reposter = post.reposted_by ? post.reposted_by.handle : "";
  return {
    author: normHandle(post.author && post.author.handle),
    reposter: normHandle(reposter),
    repost: Boolean(post.reposted_by),
    replyOutside: Boolean(post.in_reply_to) && !post.in_reply_to.id,
    host: Boolean(isHost),
    question: number(post.question),
    answer: number(post.answer),
    text: () => [post.spoiler_text, post.text, post.quote && post.quote.text].filter(Boolean).join(" "),
  };
}

export class Filters {
  constructor(slug) {
    this.key = `hashroom.filters.${slug}`;
    this.hide = new Set();
    this.mute = [];
    this.words = [];
    this.only = [];
    this.hostsOnly = false;
    this.question = null;
    this.listeners = [];
    const params = new URLSearchParams(location.search);
    if (KEYS.some((key) => params.has(key))) {
      this.read(Object.fromEntries(KEYS.map((key) => [key, params.get(key) || ""])));
    } else {
      let saved = null;
      try {
        saved = JSON.parse(store.get(this.key) || "null");
      } catch {
        saved = null;
      }
      if (saved && typeof saved === "object") this.read(saved);
    }
    this.compile();
    this.save();
  }

  /** Reads the address's comma-separated values, or the same shape saved as JSON. */
  read(values) {
    const list = (value) => (Array.isArray(value) ? value : String(value || "").split(","));
    this.hide = new Set(list(values.hide).map((kind) => kind.trim()).filter((kind) => HIDE_KINDS.includes(kind)));
    this.mute = unique(list(values.mute), normHandle);
    this.words = unique(list(values.words), normWord);
    this.only = unique(list(values.only), normHandle);
    this.hostsOnly = values.view === "hosts" || values.hostsOnly === true;
    this.question = number(values.q);
  }

  compile() {
    this.muteSet = new Set(this.mute);
    this.onlySet = new Set(this.only);
    // Whole words, any case: "spoiler" hides "SPOILER!" but not "spoilers".
    this.wordRe = this.words.length
      ? new RegExp(`(?<![\\p{L}\\p{N}_])(?:${this.words.map(escapeRe).join("|")})(?![\\p{L}\\p{N}_])`, "iu")
      : null;
  }

  /** How many filters (not views) are on, for the Filters button. */
  count() {
    return this.hide.size + this.mute.length + this.words.length + this.only.length;
  }

  /** True when the post with these facts is hidden by a filter or (unless `views` is false) a view. */
  hides(facts, { views = true } = {}) {
    if (views && this.question !== null && facts.question !== this.question && facts.answer !== this.question) {
      return true;
    }
    if (views && this.hostsOnly && !facts.host) return true;
    if (this.hide.has("reposts") && facts.repost) return true;
    if (this.hide.has("replies") && facts.replyOutside) return true;
    if (this.muteSet.has(facts.author) || (facts.reposter && this.muteSet.has(facts.reposter))) return true;
    if (this.onlySet.size && !this.onlySet.has(facts.author) && !(facts.reposter && this.onlySet.has(facts.reposter))) {
      return true;
    }
    return this.wordRe !== null && this.wordRe.test(facts.text());
  }

  /** The address query for the current filters and views, keeping other parameters. */
  query() {
    const parts = [];
    for (const [key, value] of new URLSearchParams(location.search)) {
      if (!KEYS.includes(key)) parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
    }
    if (this.hide.size) parts.push(`hide=${HIDE_KINDS.filter((kind) => this.hide.has(kind)).join(",")}`);
    if (this.mute.length) parts.push(`mute=${this.mute.map((h) => enc(`@${h}`)).join(",")}`);
    if (this.words.length) parts.push(`words=${this.words.map(enc).join(",")}`);
    if (this.only.length) parts.push(`only=${this.only.map((h) => enc(`@${h}`)).join(",")}`);
    if (this.hostsOnly) parts.push("view=hosts");
    if (this.question !== null) parts.push(`q=${this.question}`);
    return parts.length ? `?${parts.join("&")}` : "";
  }

  /** Saves filters (and the hosts-only view) in this browser and mirrors everything in the address. */
  save() {
    const saved = {
      hide: Array.from(this.hide),
      mute: this.mute,
      words: this.words,
      only: this.only,
      hostsOnly: this.hostsOnly,
    };
    const empty = !this.count() && !this.hostsOnly;
    store.set(this.key, empty ? null : JSON.stringify(saved));
    const url = `${location.pathname}${this.query()}${location.hash}`;
    if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(history.state, "", url);
  }

  /** Applies `change` to the filters, then saves and tells every listener. */
  change(change) {
    change(this);
    this.mute = unique(this.mute, normHandle);
    this.words = unique(this.words, normWord);
    this.only = unique(this.only, normHandle);
    this.compile();
    this.save();
    for (const listener of this.listeners) listener();
  }

  onChange(listener) {
    this.listeners.push(listener);
  }
}

/** The filters panel: checkboxes, three lists with add/remove, clear and copy-link buttons. */
export function setupFilterPanel(panel, filters) {
  const reposts = panel.querySelector("#hide-reposts");
  const replies = panel.querySelector("#hide-replies");
  const copied = panel.querySelector("#filters-copied");
  const labels = { mute: (h) => `@${h}`, words: (w) => w, only: (h) => `@${h}` };
  const verbs = { mute: "Unmute", words: "Unmute word", only: "Remove from shown people:" };

  const render = () => {
    reposts.checked = filters.hide.has("reposts");
    replies.checked = filters.hide.has("replies");
    for (const list of ["mute", "words", "only"]) {
      const ul = panel.querySelector(`[data-list-of="${list}"]`);
      ul.replaceChildren(
        ...filters[list].map((item) =>
          el(
            "li",
            {},
            labels[list](item),
            el(
              "button",
              { type: "button", "data-remove": list, "data-item": item, "aria-label": `${verbs[list]} ${labels[list](item)}` },
              "✕",
            ),
          ),
        ),
      );
    }
  };

  const toggle = (kind, on) =>
    filters.change((f) => {
      if (on) f.hide.add(kind);
      else f.hide.delete(kind);
    });
  reposts.addEventListener("change", () => toggle("reposts", reposts.checked));
  replies.addEventListener("change", () => toggle("replies", replies.checked));

  for (const form of panel.querySelectorAll("form[data-list]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = form.querySelector("input");
      const items = input.value.split(",").filter((item) => item.trim());
      if (!items.length) {
        input.focus();
        return;
      }
      filters.change((f) => f[form.dataset.list].push(...items));
      input.value = "";
      input.focus();
    });
  }

  panel.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-remove]");
    if (!button) return;
    const list = button.dataset.remove;
    const ul = button.closest("ul");
    filters.change((f) => {
      f[list] = f[list].filter((item) => item !== button.dataset.item);
    });
    // Focus stays in the list (or on its field once the list is empty), not on the page body.
    const next = ul.querySelector("button") || panel.querySelector(`form[data-list="${list}"] input`);
    if (next) next.focus();
  });

  panel.querySelector("#filters-clear").addEventListener("click", () => {
    filters.change((f) => {
      f.hide.clear();
      f.mute = [];
      f.words = [];
      f.only = [];
    });
  });

  panel.querySelector("#filters-copy").addEventListener("click", async () => {
    const url = `${location.origin}${location.pathname}${filters.query()}`;
    const ok = await copyText(url);
    copied.textContent = ok ? "Link copied." : `Copy this link: ${url}`;
    setTimeout(() => (copied.textContent = ""), 6000);
  });

  filters.onChange(render);
  render();
}

/**
 * The "⋯" menu of a post: mute its author, show only them, show the answers to its question.
 * One menu element serves every post; it opens right below the post's actions.
 */
export function setupPostMenu(feed, menu, { filters, showQuestion, postHidden }) {
  let opener = null;
  const whoSlots = menu.querySelectorAll('[data-slot="who"]');
  const qSlot = menu.querySelector('[data-slot="q"]');
  const answers = menu.querySelector('[data-action="answers"]');

  const close = ({ restore = false } = {}) => {
    if (!opener) return;
    const button = opener;
    opener = null;
    button.setAttribute("aria-expanded", "false");
    menu.hidden = true;
    document.body.append(menu); // out of the post, so replacing the post never takes it along
    if (restore && button.isConnected) button.focus();
  };

  const open = (button) => {
    const post = button.closest(".post");
    if (!post) return;
    close();
    opener = button;
    const handle = normHandle(post.dataset.author);
    const who = handle ? `@${handle}` : "this author";
    for (const slot of whoSlots) slot.textContent = who;
    for (const action of ["mute", "only"]) menu.querySelector(`[data-action="${action}"]`).hidden = !handle;
    const q = number(post.dataset.question) ?? number(post.dataset.answer);
    answers.hidden = q === null;
    qSlot.textContent = q === null ? "" : `Q${q}`;
    menu.dataset.handle = handle;
    menu.dataset.q = q === null ? "" : String(q);
    button.closest(".post-actions").after(menu);
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    menu.querySelector("button:not([hidden])")?.focus();
  };

  feed.addEventListener("click", (event) => {
    const button = event.target.closest("button.act-more");
    if (!button) return;
    if (opener === button) close({ restore: true });
    else open(button);
  });

  menu.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const handle = menu.dataset.handle;
    const q = number(menu.dataset.q);
    const action = button.dataset.action;
    const post = opener && opener.closest(".post");
    close({ restore: true });
    if (action === "mute" && handle) filters.change((f) => f.mute.push(handle));
    else if (action === "only" && handle) filters.change((f) => f.only.push(handle));
    else if (action === "answers" && q !== null) showQuestion(q);
    // Muting hides the post that held the focus: move on to a post still shown.
    if (post && post.hidden) postHidden(post);
  });

  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close({ restore: true });
    }
  });

  document.addEventListener("click", (event) => {
    if (opener && !menu.contains(event.target) && !event.target.closest("button.act-more")) close();
  });
  menu.addEventListener("focusout", (event) => {
    if (opener && event.relatedTarget && !menu.contains(event.relatedTarget) && event.relatedTarget !== opener) close();
  });

  return { close, isOpen: () => opener !== null };
}
