// Hashroom's service worker: the installed app's offline copy of the rooms and its push
// notifications.
//
// What it caches, and why only that:
// - room pages (/c/<slug>) and the home page, network first: online you always get the live
//   page; offline you get the copy from your last visit, which shows the posts it had and
//   resumes from its offset once the network is back (the live stream replays what was
//   missed). A copy is only ever shown when the network failed, so it is never taken for
//   fresh.
// - /static/ files, cache first: their addresses carry the asset version, so a cached file
//   is exactly the file the page asked for.
// Everything else — the API, the live websocket, feeds, calendars, health — is never cached:
// a stored answer would be shown as if it were current.

const VERSION = new URL(self.location.href).searchParams.get("v") || "0";
const PAGES = "hashroom-pages-v1";
const ASSETS = `hashroom-assets-${VERSION}`;
// Rooms kept for offline reading; the least recently stored go first.
const MAX_PAGES = 20;

function isPage(url) {
  return url.origin === self.location.origin && (url.pathname === "/" || /^\/c\/[^/]+$/.test(url.pathname));
}

function isAsset(url) {
  return url.origin === self.location.origin && url.pathname.startsWith("/static/");
}

self.addEventListener("install", () => {
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) {
        if (key.startsWith("hashroom-assets-") && key !== ASSETS) await caches.delete(key);
      }
      await self.clients.claim();
    })(),
  );
});

async function storePage(url, response) {
  // A moderator link (?key=…) redirects and is never stored; pages are stored by path only.
  if (!response.ok || response.redirected || response.type !== "basic") return;
  const cache = await caches.open(PAGES);
  await cache.put(url.origin + url.pathname, response);
  const keys = await cache.keys();
  for (const old of keys.slice(0, Math.max(0, keys.length - MAX_PAGES))) await cache.delete(old);
}

async function networkFirst(request, url) {
  try {
    const response = await fetch(request);
    if (!url.search) await storePage(url, response.clone());
    return response;
  } catch (error) {
    const cached = await caches.match(url.origin + url.pathname, { cacheName: PAGES });
    if (cached) return cached;
    return new Response(
      "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>" +
        "<title>Offline</title><p>You are offline, and this page was not opened here before. " +
        "It will load when the connection is back.</p>",
      { status: 503, headers: { "Content-Type": "text/html; charset=utf-8" } },
    );
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(ASSETS);
  const cached = await cache.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok && response.type === "basic") await cache.put(request, response.clone());
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (request.mode === "navigate" && isPage(url)) {
    event.respondWith(networkFirst(request, url));
  } else if (isAsset(url)) {
    event.respondWith(cacheFirst(request));
  }
  // Anything else goes to the network untouched.
});

// A page asks for its own copy and its files to be stored (on the first visit the page
// loaded before this worker ran; later, when the reader leaves, so the copy is recent).
self.addEventListener("message", (event) => {
  const data = event.data || {};
  if (data.type !== "keep" || !Array.isArray(data.urls)) return;
  event.waitUntil(
    (async () => {
      for (const raw of data.urls.slice(0, 50)) {
        let url;
        try {
          url = new URL(raw, self.location.origin);
        } catch {
          continue;
        }
        try {
          if (isPage(url) && !url.search) {
            await storePage(url, await fetch(url.href, { credentials: "same-origin" }));
          } else if (isAsset(url)) {
            const cache = await caches.open(ASSETS);
            if (!(await cache.match(url.href))) await cache.add(url.href);
          }
        } catch {
          // Offline or the server is away: the next visit stores it.
        }
      }
    })(),
  );
});

// -- push notifications ----------------------------------------------------------------------

function sameOriginPath(raw) {
  try {
    const url = new URL(String(raw || "/"), self.location.origin);
    return url.origin === self.location.origin ? url.pathname + url.search + url.hash : "/";
  } catch {
    return "/";
  }
}

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  // Plain text only: notifications render no HTML, and the lengths are bounded here too.
  const title = String(data.title || "Hashroom").slice(0, 200);
  const options = {
    body: String(data.body || "").slice(0, 500),
    tag: typeof data.tag === "string" ? data.tag.slice(0, 100) : undefined,
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/icon-192.png",
    data: { url: sameOriginPath(data.url), kind: String(data.kind || "") },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(event.notification.data?.url || "/", self.location.origin);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const client of windows) {
        if (new URL(client.url).pathname === target.pathname && "focus" in client) {
          return client.focus();
        }
      }
      return self.clients.openWindow(target.href);
    })(),
  );
});
