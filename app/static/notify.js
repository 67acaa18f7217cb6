// "Notify me": Web Push for one room. Permission is asked only when the reader clicks
// "Turn on", never on load. The browser's subscription is sent to the server with the kinds
// of notice chosen; the token the server returns lists and removes this browser's
// subscriptions (kept in localStorage).

const TOKEN_KEY = "hashroom:push-token";
const KIND_TEXT = {
  starts: "sessions starting",
  pinned: "new questions",
  reply: "replies to you",
};

function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function sameKey(subscription, key) {
  const current = subscription.options && subscription.options.applicationServerKey;
  if (!current) return true;
  const a = new Uint8Array(current);
  const b = keyBytes(key);
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

async function call(method, url, { body, token, csrf } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (csrf) headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if ((response.headers.get("Content-Type") || "").includes("json")) data = await response.json();
    return { ok: response.ok, status: response.status, data };
  } catch {
    return { ok: false, status: 0, data: { detail: "Could not reach the server; try again." } };
  }
}

/**
 * Wires the notification panel of the room `slug`; `register()` registers the service worker.
 * Where the browser cannot receive push messages the control stays hidden.
 */
export function setupNotify({ slug, csrf, root, register }) {
  if (!root) return;
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    return;
  }
  root.hidden = false;
  const toggle = root.querySelector("#notify-toggle");
  const panel = root.querySelector("#notify-panel");
  const on = root.querySelector("#notify-on");
  const off = root.querySelector("#notify-off");
  const status = root.querySelector("#notify-status");
  const list = root.querySelector("#notify-list");
  const boxes = Array.from(root.querySelectorAll("input[name=notify-kind]"));
  let mine = null; // this chat's subscription, when there is one

  const say = (text) => {
    status.textContent = text;
  };

  function render(subscriptions) {
    mine = subscriptions.find((s) => s.chat === slug) || null;
    off.hidden = !mine;
    on.textContent = mine ? "Save" : "Turn on";
    if (mine) for (const box of boxes) box.checked = mine.kinds.includes(box.value);
    list.replaceChildren(
      ...subscriptions.map((s) => {
        const item = document.createElement("li");
        const label = document.createElement("span");
        label.textContent = `#${s.hashtag} — ${s.title}: ${s.kinds.map((k) => KIND_TEXT[k] || k).join(", ")}`;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link-button";
        remove.textContent = "Remove";
        remove.addEventListener("click", () => removeOne(s.id));
        item.append(label, " ", remove);
        return item;
      }),
    );
    list.closest("details").hidden = subscriptions.length === 0;
  }

  async function refresh() {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) {
      render([]);
      return;
    }
    const r = await call("GET", "/api/push/subscriptions", { token });
    if (r.ok) render(r.data || []);
  }

  async function removeOne(id) {
    const token = localStorage.getItem(TOKEN_KEY);
    const r = await call("DELETE", `/api/push/subscriptions/${id}`, { token });
    if (r.ok || r.status === 404) say("Notifications removed.");
    else say((r.data && r.data.detail) || "Could not remove them; try again.");
    await refresh();
  }

  async function turnOn() {
    const kinds = boxes.filter((b) => b.checked).map((b) => b.value);
    if (!kinds.length) {
      say("Choose at least one kind of notification.");
      return;
    }
    // The permission prompt comes from this click, never from loading the page.
    const permission =
      Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    if (permission !== "granted") {
      say("Notifications are blocked for this site: allow them in the browser's site settings.");
      return;
    }
    say("Turning on…");
    const registration = (await register()) && (await navigator.serviceWorker.ready);
    if (!registration) {
      say("This browser cannot receive notifications here.");
      return;
    }
    const keyAnswer = await call("GET", "/api/push/key");
    if (!keyAnswer.ok) {
      say((keyAnswer.data && keyAnswer.data.detail) || "Notifications are off on this server.");
      return;
    }
    const key = keyAnswer.data.key;
    let subscription;
    try {
      subscription = await registration.pushManager.getSubscription();
      if (subscription && !sameKey(subscription, key)) {
        await subscription.unsubscribe();
        subscription = null;
      }
      subscription ||= await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(key),
      });
    } catch {
      say("The browser could not subscribe to notifications (its push service may be unreachable).");
      return;
    }
    const r = await call("POST", "/api/push/subscriptions", {
      body: { chat: slug, kinds, subscription: subscription.toJSON() },
      csrf,
    });
    if (!r.ok) {
      say((r.data && r.data.detail) || "Could not turn notifications on; try again.");
      return;
    }
    localStorage.setItem(TOKEN_KEY, r.data.token);
    say(`On: you will be told about ${kinds.map((k) => KIND_TEXT[k]).join(", ")}.`);
    await refresh();
  }

  toggle.addEventListener("click", () => {
    const open = panel.hidden;
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) refresh();
  });
  on.addEventListener("click", turnOn);
  off.addEventListener("click", () => mine && removeOne(mine.id));
}
