// The moderator panel's "Bluesky feed" section: publish this chat as a Bluesky custom feed
// with one of this browser's Bluesky accounts, in one click, or remove it.

const version = new URL(import.meta.url).search;
const { api, apiFrom, el, errorText } = await import(`./common.js${version}`);

const $ = (id) => document.getElementById(id);
const slug = document.body.dataset.slug;
const base = `/api/chats/${encodeURIComponent(slug)}/feed`;
const state = $("mod-feed-state");
const select = $("mod-feed-account");
const publish = $("mod-feed-publish");
const remove = $("mod-feed-remove");
const error = $("mod-feed-error");

function showFeed(feed) {
  remove.hidden = !feed;
  publish.textContent = feed ? "Publish again" : "Publish as a Bluesky feed";
  if (feed) {
    state.replaceChildren("Published: ", el("a", { href: feed.url, rel: "noopener", text: "open it on Bluesky" }));
  } else {
    state.textContent = "Not published.";
  }
}

async function load() {
  const [feed, mine] = await Promise.all([api("GET", base), api("GET", "/api/accounts/mine")]);
  if (feed.ok) showFeed(feed.data.feed);
  const accounts = mine.ok ? mine.data.filter((a) => a.network === "bluesky") : [];
  select.replaceChildren(...accounts.map((a) => el("option", { value: a.id, text: a.handle })));
  publish.disabled = accounts.length === 0;
  if (!accounts.length) error.textContent = "Sign in with Bluesky first (in the composer above).";
}

publish.addEventListener("click", async () => {
  error.textContent = "";
  const r = await apiFrom(publish, "PUT", base, { account_id: Number(select.value) });
  if (!r) return;
  if (r.ok) showFeed(r.data.feed);
  else error.textContent = errorText(r.status, r.data) || "Could not publish the feed.";
});

remove.addEventListener("click", async () => {
  error.textContent = "";
  const r = await apiFrom(remove, "DELETE", `${base}?account_id=${encodeURIComponent(select.value)}`);
  if (!r) return;
  if (r.ok) showFeed(null);
  else error.textContent = errorText(r.status, r.data) || "Could not remove the feed.";
});

load();
