// Helpers shared by the page modules: DOM building without innerHTML, the API fetch wrapper
// (CSRF header, busy buttons, JSON errors), relative times in the viewer's zone, grapheme counting.

/** Marks the document as scripted so CSS can reveal controls that need JavaScript. */
export function markScripted() {
  document.documentElement.classList.add("js");
}

/** Builds an element; `attrs` are set as attributes (or `text`/`className`), children appended. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The CSRF token the server put on the page (body data attribute or a form's hidden field). */
export function csrfToken() {
  const fromBody = document.body.dataset.csrf;
  if (fromBody) return fromBody;
  const input = document.querySelector('input[name="csrf_token"]');
  return input ? input.value : "";
}

/**
 * Sends a JSON request with the CSRF header and returns `{ok, status, data}`; never throws.
 * A network failure comes back as status 0 with a readable `detail`.
 */
export async function api(method, url, body) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
  const init = { method, headers, credentials: "same-origin" };
  if (body instanceof FormData) {
    init.body = body; // the browser sets the multipart content type
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    return { ok: false, status: 0, data: { detail: "Could not reach the server. Check your connection and try again." } };
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  return { ok: response.ok, status: response.status, data };
}

// Busy controls get aria-disabled, not disabled: disabling the focused button would drop
// keyboard focus to the page body.

/** Whether `button` is busy with a request (see `apiFrom`). */
export function isBusy(button) {
  return Boolean(button) && button.getAttribute("aria-disabled") === "true";
}

/** `api()` on behalf of `button`, busy meanwhile; null, sending nothing, if it already is. */
export async function apiFrom(button, method, url, body) {
  if (isBusy(button)) return null;
  button?.setAttribute("aria-disabled", "true");
  const response = await api(method, url, body);
  button?.removeAttribute("aria-disabled");
  return response;
}

/**
 * Reads an API error body: `{"detail": "msg"}`, FastAPI's `{"detail": [{loc, msg}, …]}`, or
 * this app's `{"detail": "field: msg; …", "errors": [{loc, msg}, …]}`.
 * Returns `{message, fields}`: `fields` maps a field name to its message, `message` holds
 * what belongs to no field. A lone "field: msg" detail is read as that field's message.
 */
export function readError(status, data) {
  const fields = {};
  const loose = [];
  const detail = data && data.detail;
  const list = Array.isArray(detail) ? detail : data && Array.isArray(data.errors) ? data.errors : null;
  if (list) {
    for (const item of list) {
      const msg = item && typeof item.msg === "string" ? item.msg.replace(/^Value error, /, "") : "";
      const loc = item && Array.isArray(item.loc) ? item.loc : [];
      const field = loc.length ? String(loc[loc.length - 1]) : "";
      if (field && !["body", "query", "path"].includes(field) && !(field in fields)) fields[field] = msg;
      else if (msg) loose.push(msg);
    }
  } else if (typeof detail === "string") {
    const match = /^([a-z_]+): ([^;]+)$/.exec(detail);
    if (match) fields[match[1]] = match[2];
    else loose.push(detail);
  } else if (detail && typeof detail === "object" && typeof detail.message === "string") {
    loose.push(detail.message);
  }
  let message = loose.join(" ");
  if (!message && !Object.keys(fields).length) {
    if (status === 0) message = "Could not reach the server.";
    else if (status === 403) message = "Not allowed. Reload the page and try again.";
    else if (status === 429) message = "Too many requests. Wait a moment and try again.";
    else message = `Something went wrong (HTTP ${status}).`;
  }
  return { message, fields };
}

/** Every message of an error body as one sentence, for places with a single error line. */
export function errorText(status, data) {
  const { message, fields } = readError(status, data);
  return [message, ...Object.values(fields)].filter(Boolean).join(" ");
}

const segmenter =
  typeof Intl !== "undefined" && Intl.Segmenter ? new Intl.Segmenter(undefined, { granularity: "grapheme" }) : null;

/** Counts user-perceived characters (grapheme clusters), the unit post limits are set in. */
export function graphemeCount(text) {
  if (!text) return 0;
  if (!segmenter) return Array.from(text).length;
  let n = 0;
  for (const _ of segmenter.segment(text)) n += 1;
  return n;
}

/** The last `n` graphemes of `text`, prefixed with "…" when it was cut. */
export function graphemeTail(text, n) {
  const parts = segmenter ? Array.from(segmenter.segment(text), (s) => s.segment) : Array.from(text);
  return parts.length <= n ? text : "…" + parts.slice(parts.length - n).join("");
}

const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const yearFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });

/** "just now", "5 min ago", "3 h ago", then a local date: short words for a busy column. */
export function relativeTime(date, now = new Date()) {
  const seconds = Math.round((now - date) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  if (now.getFullYear() === date.getFullYear()) return dayFormat.format(date);
  return yearFormat.format(date);
}

/** Rewrites every `<time class="rel-time">` under `root` as relative local time, full time in title. */
export function refreshTimes(root = document) {
  const now = new Date();
  for (const node of root.querySelectorAll("time.rel-time[datetime]")) {
    const date = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    const text = relativeTime(date, now);
    if (node.textContent !== text) node.textContent = text;
    if (!node.title) node.title = fullFormat.format(date);
  }
}

/**
 * Keeps relative times fresh: now, every `intervalMs`, and when the tab becomes visible again.
 * `around(refresh)` runs each refresh, for a page that must hold its scroll position meanwhile.
 */
export function keepTimesFresh(root = document, intervalMs = 30000, around = (refresh) => refresh()) {
  const refresh = () => around(() => refreshTimes(root));
  refresh();
  setInterval(refresh, intervalMs);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
}

/** localStorage that quietly does nothing when storage is blocked (private modes, quotas). */
export const store = {
  get(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      if (value === null || value === "") window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch {
      // Storage is a convenience; the page works without it.
    }
  },
};

/** Copies text to the clipboard; falls back to selecting `input` so the user can copy it. */
export async function copyText(text, input) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Fall through to selection.
  }
  if (input) {
    input.focus();
    input.select();
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    }
  }
  return false;
}
