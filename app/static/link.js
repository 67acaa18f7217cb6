// Moderator and host links carry their secret in the fragment (#key=… / #host=…), which the
// browser never sends: it stays out of server logs, proxies and referrers. This script hands
// it to the server in a POST, clears it from the address bar and history first, then reloads.
const match = /^#(key|host)=(.+)$/.exec(window.location.hash);
if (match) {
  const [, kind, secret] = match;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  const slug = document.body.dataset.slug;
  const form = new URLSearchParams({
    csrf_token: document.body.dataset.csrf || "",
    [kind === "key" ? "key" : "token"]: decodeURIComponent(secret),
  });
  const path = `/c/${encodeURIComponent(slug)}/${kind === "key" ? "moderate" : "host"}`;
  fetch(path, { method: "POST", body: form, credentials: "same-origin", redirect: "manual" })
    .then((response) => {
      if (response.type === "opaqueredirect" || response.ok) {
        window.location.reload();
      } else {
        window.location.assign(path); // the form says what went wrong
      }
    })
    .catch(() => window.location.assign(path));
}
