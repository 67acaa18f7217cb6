// The home page: relative times on the room list, and "Start a chat" through the JSON API
// (the form still posts as a plain form without JavaScript).

const version = new URL(import.meta.url).search;
const { apiFrom, copyText, el, isBusy, keepTimesFresh, markScripted, readError } = await import(`./common.js${version}`);

markScripted();
keepTimesFresh(document, 30000);

// ---------------------------------------------------------------------------------------
// Live and upcoming sessions: the server writes UTC; show the reader's own clock and how
// soon each starts.

const sessionFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
  timeZoneName: "short",
});

/** "Tue 3 Nov, 19:00 GMT+11": parts assembled in one order whatever the locale's. */
function localSessionTime(date) {
  const parts = Object.fromEntries(sessionFormat.formatToParts(date).map((p) => [p.type, p.value]));
  return `${parts.weekday} ${parts.day} ${parts.month}, ${parts.hour}:${parts.minute} ${parts.timeZoneName || ""}`.trim();
}

/** "starts in 5 min", "starts in 2 h", "starts in 3 days", "live now", "ended". */
function sessionStatus(start, end, now) {
  if (now >= end) return "ended";
  if (now >= start) return "live now";
  const minutes = Math.ceil((start - now) / 60000);
  if (minutes < 60) return `starts in ${minutes} min`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `starts in ${hours} h`;
  return `starts in ${Math.round(hours / 24)} days`;
}

function refreshSessions() {
  const now = new Date();
  for (const node of document.querySelectorAll("time.session-time[datetime]")) {
    const date = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    node.textContent = localSessionTime(date);
  }
  for (const badge of document.querySelectorAll(".session-status[data-start]")) {
    const start = new Date(badge.dataset.start);
    const end = new Date(badge.dataset.end);
    if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) continue;
    const text = sessionStatus(start, end, now);
    if (badge.textContent !== text) badge.textContent = text;
    badge.classList.toggle("mod", text === "live now");
  }
}

refreshSessions();
setInterval(refreshSessions, 30000);

const $ = (id) => document.getElementById(id);
const form = $("start-form");
const formError = $("start-error");
const submit = $("start-submit");
const created = $("created");
const FIELDS = ["hashtag", "title", "description", "sources"];

function clearErrors() {
  formError.textContent = "";
  for (const name of FIELDS) {
    $(`f-${name}-error`).textContent = "";
    $(`f-${name}`).removeAttribute("aria-invalid");
  }
}

function showErrors(status, data) {
  const { message, fields } = readError(status, data);
  let first = null;
  const loose = [];
  for (const [key, text] of Object.entries(fields)) {
    const name = key === "hashtags" ? "hashtag" : key; // the one field takes every tag
    if (!FIELDS.includes(name)) {
      loose.push(text);
      continue;
    }
    $(`f-${name}-error`).textContent = text;
    const input = $(`f-${name}`);
    input.setAttribute("aria-invalid", "true");
    first = first || input;
  }
  formError.textContent = [message, ...loose].filter(Boolean).join(" ");
  (first || formError).focus?.();
  if (!first) formError.scrollIntoView({ block: "nearest" });
}

function addToList(chat) {
  const list = $("chat-list");
  if (!list || !chat || !chat.slug) return;
  list.hidden = false;
  $("no-chats")?.remove();
  list.prepend(
    el(
      "li",
      { className: "chat-item", "data-slug": chat.slug },
      el(
        "a",
        { className: "chat-link", href: `/c/${encodeURIComponent(chat.slug)}` },
        el("span", { className: "chat-title", text: chat.title || chat.hashtag }),
        " ",
        el("span", { className: "chat-tag", text: `#${(chat.hashtags || [chat.hashtag]).join(" #")}` }),
      ),
      chat.description ? el("p", { className: "chat-desc", text: chat.description }) : null,
      el("p", { className: "chat-stats", text: "New room" }),
    ),
  );
}

function showCreated(data) {
  const roomUrl = `/c/${encodeURIComponent(data.slug)}`;
  const modUrl = new URL(data.moderator_url || roomUrl, location.origin).href;
  $("created-key").textContent = data.moderator_key || "";
  $("created-url").value = modUrl;
  $("created-mod-link").href = modUrl;
  $("created-room-link").href = roomUrl;
  $("copy-status").textContent = "";
  form.hidden = true;
  created.hidden = false;
  created.focus();
}

$("copy-url").addEventListener("click", async () => {
  const input = $("created-url");
  const copied = await copyText(input.value, input);
  $("copy-status").textContent = copied ? "Link copied." : "Selected — copy it with your device's copy command.";
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (isBusy(submit)) return; // already sending
  clearErrors();
  const value = (name) => form.elements[name].value.trim();
  const payload = {
    hashtag: value("hashtag"),
    title: value("title"),
    description: value("description"),
  };
  if (!payload.hashtag || !payload.title) {
    const fields = {};
    if (!payload.hashtag) fields.hashtag = "Enter a hashtag (several: separate them with spaces or commas).";
    if (!payload.title) fields.title = "Give the room a title.";
    showErrors(422, { detail: Object.entries(fields).map(([k, msg]) => ({ loc: ["body", k], msg })) });
    return;
  }
  // The form itself is the request: the server turns its network fields into sources,
  // the same way for this script and for browsers without it.
  const data = new FormData(form);
  data.set("hashtag", payload.hashtag);
  submit.textContent = "Starting…";
  const response = await apiFrom(submit, "POST", "/chats", data);
  submit.textContent = "Start the chat";
  if (response.ok && response.data && response.data.slug) {
    addToList(response.data.chat || { ...payload, hashtags: payload.hashtag.split(/[\s,;]+/), slug: response.data.slug });
    showCreated(response.data);
    form.reset();
    return;
  }
  showErrors(response.status, response.data);
});
