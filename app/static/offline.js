// The installable app: registers the service worker (sw.js) and asks it to keep a copy of
// this page and its files, so the room opens offline with the posts it last had.

// A copy is refreshed when the reader leaves the page, at most this often: each refresh
// renders the room once more on the server.
const KEEP_EVERY_MS = 5 * 60 * 1000;

/** Registers the worker; resolves to its registration, or null where there is none. */
export async function registerWorker(version) {
  if (!("serviceWorker" in navigator)) return null;
  try {
    return await navigator.serviceWorker.register(`/sw.js${version}`, { scope: "/" });
  } catch {
    return null;
  }
}

function staticUrls() {
  const urls = new Set();
  for (const entry of performance.getEntriesByType("resource")) {
    const url = new URL(entry.name);
    if (url.origin === location.origin && url.pathname.startsWith("/static/")) urls.add(url.href);
  }
  for (const node of document.querySelectorAll("script[src], link[rel=stylesheet][href]")) {
    urls.add(new URL(node.src || node.href, location.href).href);
  }
  return Array.from(urls);
}

/** Keeps this page (and its files) for offline reading. */
export async function keepForOffline(version) {
  // Read before registering: the new worker may claim this page while it starts.
  const servedByWorker = Boolean(navigator.serviceWorker && navigator.serviceWorker.controller);
  const registration = await registerWorker(version);
  if (!registration) return;
  const ready = await navigator.serviceWorker.ready;
  let last = 0;
  const keep = (withFiles) => {
    if (!navigator.onLine || !ready.active) return;
    last = Date.now();
    // The page goes last: once it is stored, so are the files it needs.
    const urls = [...(withFiles ? staticUrls() : []), location.pathname];
    ready.active.postMessage({ type: "keep", urls });
  };
  // The first visit was not served through the worker: store it now.
  if (!servedByWorker) keep(true);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && Date.now() - last > KEEP_EVERY_MS) keep(false);
  });
}
