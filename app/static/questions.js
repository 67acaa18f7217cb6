// Questions and answers: the Questions panel (each question with its answer count, the
// current one marked; choosing one shows only its answers in the column) and the composer's
// "A3:" button, offered while question 3 is pinned.

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
  let loaded = false;
  let lastLoad = 0;
  let timer = 0;
  let inFlight = false;
  const listeners = [];

  const render = () => {
    const items = Array.from(groups.values()).sort((a, b) => a.number - b.number);
    list.replaceChildren(
      ...items.map((group) => {
        const question = group.question;
        const text = question ? questionText(question.spoiler_text || question.text, group.number, hashtag) : "";
        const count = Number(group.count ?? (group.answers || []).length) || 0;
        const button = el(
          "button",
          {
            type: "button",
            className: "q-item",
            "data-q": group.number,
            "aria-pressed": filters.question === group.number ? "true" : "false",
            "aria-current": group.current ? "true" : null,
          },
          el("span", { className: "chip chip-q", text: `Q${group.number}` }),
          el("span", {
            className: "q-text",
            text: text || "Question not in the room",
          }),
          el("span", { className: "q-count", text: count ? plural(count, "answer", "answers") : "No answers yet" }),
          group.current ? el("span", { className: "badge now", text: "Now" }) : null,
        );
        return el("li", {}, button);
      }),
    );
    if (!loaded) status.textContent = "Loading questions…";
    else if (!items.length) status.textContent = "No questions yet. Hosts post them as Q1, Q2…";
    else status.textContent = "";
  };

  const load = async () => {
    if (inFlight) return;
    inFlight = true;
    lastLoad = performance.now();
    const response = await api("GET", `${apiBase}/questions`);
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

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.q-item");
    if (button) showQuestion(Number(button.dataset.q));
  });

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
