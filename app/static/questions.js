// Questions and answers: the Questions panel (questions ranked by the audience's votes or by
// time, open / answered, each with its answer count and the current one marked; choosing a
// numbered one shows only its answers in the column; moderators mark them answered) and the
// composer's "A3:" button, offered while question 3 is pinned.

const version = new URL(import.meta.url).search;
const { api, el, errorText } = await import(`./common.js${version}`);

// The panel reloads at most this often while frames keep changing answers.
const REFRESH_MS = 3000;
const QUESTION_CHARS = 160;
// "A3:", "A3a)", "A 3 -" at the start of a draft: replaced, not doubled, by the button.
const ANSWER_PREFIX = /^\s*A\s?\d{1,2}[a-z]?\s*[:.)\]/-]?\s*/i;

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

const escapeRe = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A question's text for the list: without its "Q3:" (the chip says it) or a closing #tag. */
function questionText(text, n, hashtag) {
  let out = String(text || "").replace(new RegExp(`^[^\\p{L}\\p{N}]*[Qq]\\s?0*${n}(?!\\d)[\\s:.)\\]/—–-]*`, "u"), "");
  if (hashtag) out = out.replace(new RegExp(`\\s*#${escapeRe(hashtag)}\\s*$`, "iu"), "");
  out = out.trim() || String(text || "").trim();
  return out.length > QUESTION_CHARS ? `${out.slice(0, QUESTION_CHARS - 1)}…` : out;
}

/**
 * panel/list/status: the Questions panel. filters: the Filters (its `question` is the view).
 * showQuestion(n): what choosing a question does. Returns the panel's controller.
 */
export function setupQuestions({ apiBase, hashtag, panel, list, status, filters, showQuestion }) {
  let groups = new Map();
  let ranked = [];
  let counts = { open: 0, answered: 0, all: 0 };
  let loaded = false;
  let lastLoad = 0;
  let timer = 0;
  let inFlight = false;
  const listeners = [];
  const moderator = document.body.classList.contains("is-mod");
  const sortSelect = panel.querySelector("#questions-sort");
  const stateButtons = Array.from(panel.querySelectorAll("button[data-state]"));
  let state = "all";

  const voteLabel = (q) => `${plural(q.votes, "vote", "votes")}${q.voted ? ", yours included" : ""}`;

  const entry = (q) => {
    const post = q.post || {};
    const n = Number.isInteger(q.number) ? q.number : null;
    const group = n === null ? null : groups.get(n);
    const text = questionText(post.spoiler_text || post.text, n ?? "", hashtag);
    const count = Number(q.answers) || 0;
    const current = Boolean(group && group.current);
    const vote = el(
      "button",
      {
        type: "button",
        className: "q-vote",
        "data-vote": post.id,
        "aria-pressed": q.voted ? "true" : "false",
        "aria-label": `Upvote: ${voteLabel(q)}`,
        title: q.voted ? "Take your vote back" : "Upvote this question",
      },
      el("span", { className: "q-vote-arrow", "aria-hidden": "true", text: "▲" }),
      el("span", { className: "q-votes", text: String(q.votes) }),
    );
    const body = [
      n !== null ? el("span", { className: "chip chip-q", text: `Q${n}` }) : null,
      el("span", { className: "q-text", text: text || "Question" }),
      n !== null ? el("span", { className: "q-count", text: count ? plural(count, "answer", "answers") : "No answers yet" }) : null,
      q.answered ? el("span", { className: "badge answered", text: "Answered" }) : null,
      current ? el("span", { className: "badge now", text: "Now" }) : null,
    ];
    const item =
      n !== null
        ? el(
            "button",
            {
              type: "button",
              className: "q-item",
              "data-q": n,
              "aria-pressed": filters.question === n ? "true" : "false",
              "aria-current": current ? "true" : null,
            },
            ...body,
          )
        : el("a", { className: "q-item", href: `#post-${post.id}` }, ...body);
    const mark = moderator
      ? el("button", {
          type: "button",
          className: "q-mark",
          "data-answered": post.id,
          "aria-pressed": q.answered ? "true" : "false",
          text: q.answered ? "Reopen" : "Mark answered",
        })
      : null;
    return el("li", { className: q.answered ? "q-entry is-answered" : "q-entry", "data-post-id": post.id }, vote, item, mark);
  };

  const render = () => {
    const shown = ranked.filter((q) => state === "all" || q.answered === (state === "answered"));
    list.replaceChildren(...shown.map(entry));
    for (const button of stateButtons) {
      const name = button.dataset.state;
      button.setAttribute("aria-pressed", name === state ? "true" : "false");
      const counter = button.querySelector(".q-state-count");
      if (counter) counter.textContent = String(counts[name] ?? 0);
    }
    if (!loaded) status.textContent = "Loading questions…";
    else if (!ranked.length) status.textContent = "No questions yet. Hosts post them as Q1, Q2…";
    else if (!shown.length) status.textContent = state === "open" ? "Every question is answered." : "No question is marked answered yet.";
    else status.textContent = "";
  };

  const load = async () => {
    if (inFlight) return;
    inFlight = true;
    lastLoad = performance.now();
    const sort = sortSelect ? sortSelect.value : "votes";
    const response = await api("GET", `${apiBase}/questions?sort=${encodeURIComponent(sort)}`);
    inFlight = false;
    if (!response.ok || !response.data || !Array.isArray(response.data.groups)) {
      status.textContent = `Could not load the questions: ${errorText(response.status, response.data)}`;
      return;
    }
    groups = new Map();
    for (const group of response.data.groups) {
      const n = Number(group.number);
      if (Number.isInteger(n)) groups.set(n, { ...group, number: n });
    }
    ranked = Array.isArray(response.data.questions) ? response.data.questions : [];
    counts = response.data.counts || counts;
    loaded = true;
    render();
    for (const listener of listeners) listener();
  };

  /** Reloads soon, at most once per REFRESH_MS. */
  const refreshSoon = () => {
    if (timer) return;
    const wait = Math.max(0, lastLoad + REFRESH_MS - performance.now());
    timer = setTimeout(() => {
      timer = 0;
      load();
    }, wait);
  };

  const wanted = () => !panel.hidden || filters.question !== null;

  const find = (postId) => ranked.find((q) => q.post && Number(q.post.id) === Number(postId));

  const send = async (button, method, path) => {
    button.disabled = true;
    const response = await api(method, `${apiBase}/questions/${path}`);
    button.disabled = false;
    if (!response.ok) {
      status.textContent = `Could not change that: ${errorText(response.status, response.data)}`;
      return null;
    }
    return response.data;
  };

  list.addEventListener("click", async (event) => {
    const vote = event.target.closest("button.q-vote");
    if (vote) {
      const q = find(vote.dataset.vote);
      if (!q) return;
      const data = await send(vote, q.voted ? "DELETE" : "PUT", `${q.post.id}/vote`);
      if (data) {
        Object.assign(q, { votes: data.votes, voted: data.voted });
        render();
        list.querySelector(`button[data-vote="${q.post.id}"]`)?.focus();
      }
      return;
    }
    const mark = event.target.closest("button.q-mark");
    if (mark) {
      const q = find(mark.dataset.answered);
      if (!q) return;
      const data = await send(mark, q.answered ? "DELETE" : "PUT", `${q.post.id}/answered`);
      if (data) {
        q.answered = data.answered;
        counts = { ...counts, open: counts.open + (data.answered ? -1 : 1), answered: counts.answered + (data.answered ? 1 : -1) };
        render();
        refreshSoon();
      }
      return;
    }
    const button = event.target.closest("button.q-item");
    if (button) showQuestion(Number(button.dataset.q));
  });

  sortSelect?.addEventListener("change", () => load());
  for (const button of stateButtons) {
    button.addEventListener("click", () => {
      state = button.dataset.state;
      render();
    });
  }

  filters.onChange(() => {
    if (loaded) render();
  });

  return {
    /** The panel was opened: load now (or soon, if just loaded). */
    opened() {
      render();
      if (!loaded || performance.now() - lastLoad > REFRESH_MS) load();
      else refreshSoon();
    },
    /** A live frame arrived: counts may have changed. */
    frameSeen(frame) {
      if (!wanted()) return;
      if (frame.type === "vote" || frame.type === "answered") {
        // Shown at once; the order follows with the next reload.
        const q = find(frame.post_id);
        if (q) {
          if (frame.type === "vote") q.votes = Number(frame.votes) || 0;
          else if (q.answered !== Boolean(frame.answered)) {
            q.answered = Boolean(frame.answered);
            counts = { ...counts, open: counts.open + (q.answered ? -1 : 1), answered: counts.answered + (q.answered ? 1 : -1) };
          }
          render();
        }
        refreshSoon();
        return;
      }
      const post = frame.post;
      const relevant =
        ["delete", "hide", "pin", "unpin"].includes(frame.type) ||
        (post && (post.question !== null && post.question !== undefined || post.answer !== null && post.answer !== undefined));
      if (relevant) refreshSoon();
    },
    group: (n) => groups.get(n),
    load,
    onGroups(listener) {
      listeners.push(listener);
    },
  };
}

/**
 * The composer's answer button: while a numbered question is pinned, "A3:" starts the draft
 * with that answer prefix in one click (replacing another A-prefix already there).
 */
export function setupAnswerPrefix({ button, text, hint, pinList, textArea }) {
  if (!button || !textArea) return;
  let current = null;

  const refresh = () => {
    const pins = pinList.querySelectorAll(".pin[data-question]");
    const last = pins.length ? pins[pins.length - 1] : null;
    const n = last ? Number(last.dataset.question) : null;
    current = Number.isInteger(n) ? n : null;
    button.hidden = current === null;
    if (current !== null) {
      text.textContent = `A${current}:`;
      hint.textContent = ` start an answer to question ${current}`;
    }
  };

  button.addEventListener("click", () => {
    if (current === null) return;
    const rest = textArea.value.replace(ANSWER_PREFIX, "");
    textArea.value = `A${current}: ${rest}`;
    textArea.focus();
    textArea.setSelectionRange(textArea.value.length, textArea.value.length);
    textArea.dispatchEvent(new Event("input", { bubbles: true }));
  });

  new MutationObserver(refresh).observe(pinList, { childList: true, subtree: true, attributes: true });
  refresh();
}
