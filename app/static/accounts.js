// "Post as" in the composer (templates/_accounts.html): pick a network account, sign in with
// Mastodon, sign out. The chosen account goes into #account-id, which chat.js sends as
// `account_id`; its data-limit is that network's post length. Tokens never reach this page:
// the server keeps them and only account ids and public handles appear here.

const version = new URL(import.meta.url).search;
const { api, apiFrom, errorText, isBusy, store } = await import(`./common.js${version}`);

const $ = (id) => document.getElementById(id);
const box = $("post-as");
if (box) setUp(box);

function setUp(box) {
  const slug = document.body.dataset.slug;
  const native = box.dataset.native === "true";
  const networks = new Set((box.dataset.networks || "").split(" ").filter(Boolean));
  const chosen = $("account-id");
  const select = $("post-as-select");
  const choice = $("post-as-choice");
  const signOut = $("sign-out");
  const status = $("post-as-status");
  const error = $("post-as-error");
  const textArea = $("post-text");
  const nameField = $("author")?.closest(".field");
  const choiceKey = `hashroom.account.${slug}`;
  // Stored when the reader picks their display name on purpose (the default is an account).
  const BY_NAME = "name";

  /** Copies the selected option into #account-id and shows what fits that choice. */
  function apply({ remember = false } = {}) {
    const option = select.selectedOptions[0];
    const id = option ? option.value : "";
    chosen.value = id;
    chosen.dataset.limit = id ? option.dataset.limit || "" : "";
    chosen.dataset.handle = id ? option.dataset.handle || "" : "";
    chosen.dataset.network = id ? option.dataset.network || "" : "";
    choice.hidden = select.options.length === 0;
    signOut.hidden = !id;
    // Posting as an account needs no display name; a room of network posts never takes one.
    if (nameField) nameField.hidden = Boolean(id) || !native;
    if (remember) store.set(choiceKey, id || BY_NAME);
    // chat.js recounts with the chosen network's limit and updates its preview.
    textArea?.dispatchEvent(new Event("input"));
  }

  /** The stored choice when it is still offered, else the newest account (or the name). */
  function choose() {
    const values = Array.from(select.options, (o) => o.value);
    const stored = store.get(choiceKey);
    if (stored === BY_NAME && values.includes("")) select.value = "";
    else if (stored && values.includes(stored)) select.value = stored;
    else if (values.length) select.value = values[values.length - 1];
  }

  function accountOption(account) {
    const label = { mastodon: "Mastodon", bluesky: "Bluesky", x: "X" }[account.network] || account.network;
    const option = new Option(`${account.handle} (${label})`, String(account.id));
    option.dataset.network = account.network;
    option.dataset.handle = account.handle;
    option.dataset.limit = account.limit ? String(account.limit) : "";
    return option;
  }

  /** Brings the list in line with the session (another tab may have signed in or out). */
  async function refresh() {
    const response = await api("GET", "/api/accounts/mine");
    if (!response.ok || !Array.isArray(response.data)) return;
    const known = new Map(Array.from(select.options, (o) => [o.value, o]));
    const options = [];
    if (native) options.push(known.get("") || new Option("Your display name (this room only)", ""));
    for (const account of response.data) {
      if (!networks.has(account.network)) continue;
      options.push(known.get(String(account.id)) || accountOption(account));
    }
    const current = select.value;
    select.replaceChildren(...options);
    if (options.some((o) => o.value === current)) select.value = current;
    else choose();
    apply();
  }

  select.addEventListener("change", () => {
    status.textContent = "";
    apply({ remember: true });
  });

  signOut.addEventListener("click", async () => {
    const option = select.selectedOptions[0];
    if (!option || !option.value || isBusy(signOut)) return;
    error.textContent = "";
    const response = await apiFrom(signOut, "DELETE", `/api/accounts/${encodeURIComponent(option.value)}`);
    if (!response.ok && response.status !== 404) {
      error.textContent = `Could not sign out: ${errorText(response.status, response.data)}`;
      return;
    }
    const handle = option.dataset.handle || "your account";
    option.remove();
    choose();
    apply();
    status.textContent = `Signed out of ${handle}.`;
  });

  // Sign in with Mastodon: the instance's own page asks the user to approve Hashroom, then
  // sends them back here. A plain navigation (not a form submission), so the page's
  // form-action policy does not stop the redirect to the instance.
  const signIn = $("mastodon-signin");
  const panel = $("mastodon-signin-panel");
  const instance = $("mastodon-instance");
  const go = $("mastodon-continue");
  if (signIn && panel && instance && go) {
    signIn.addEventListener("click", () => {
      const open = panel.hidden;
      panel.hidden = !open;
      signIn.setAttribute("aria-expanded", String(open));
      if (open) {
        if (!instance.value) instance.value = store.get("hashroom.mastodon.instance") || "";
        instance.focus();
      }
    });
    const start = () => {
      const address = instance.value.trim();
      if (!address) {
        error.textContent = "Type your Mastodon instance first, e.g. mastodon.social.";
        instance.focus();
        return;
      }
      error.textContent = "";
      store.set("hashroom.mastodon.instance", address);
      const query = `instance=${encodeURIComponent(address)}&next=${encodeURIComponent(location.pathname)}`;
      location.assign(`/auth/mastodon/start?${query}`);
    };
    go.addEventListener("click", start);
    instance.addEventListener("keydown", (event) => {
      // Enter would submit the composer around this field.
      if (event.key === "Enter") {
        event.preventDefault();
        start();
      }
    });
  }

  // Sign in with Bluesky: the handle and an app password go to the server once, which signs
  // in on the account's own server and keeps only the session it gets back.
  const bsky = $("bluesky-signin");
  const bskyPanel = $("bluesky-signin-panel");
  const bskyHandle = $("bluesky-identifier");
  const bskyPassword = $("bluesky-password");
  const bskyService = $("bluesky-service");
  const bskyGo = $("bluesky-continue");
  if (bsky && bskyPanel && bskyHandle && bskyPassword && bskyGo) {
    bsky.addEventListener("click", () => {
      const open = bskyPanel.hidden;
      bskyPanel.hidden = !open;
      bsky.setAttribute("aria-expanded", String(open));
      if (open) bskyHandle.focus();
    });
    const signInBluesky = async () => {
      if (isBusy(bskyGo)) return;
      const identifier = bskyHandle.value.trim();
      const password = bskyPassword.value.trim();
      if (!identifier || !password) {
        error.textContent = "Type your Bluesky handle and an app password.";
        (identifier ? bskyPassword : bskyHandle).focus();
        return;
      }
      error.textContent = "";
      status.textContent = "Signing in to Bluesky…";
      const body = { network: "bluesky", identifier, app_password: password };
      if (navigator.language) body.langs = [navigator.language];
      const service = bskyService ? bskyService.value.trim() : "";
      if (service) body.service = service;
      const response = await apiFrom(bskyGo, "POST", "/api/accounts", body);
      if (!response.ok) {
        status.textContent = "";
        error.textContent = `Could not sign in: ${errorText(response.status, response.data)}`;
        bskyPassword.focus();
        return;
      }
      bskyPassword.value = "";
      const account = response.data;
      const option = accountOption({ ...account, limit: account.limit || Number(bskyPanel.dataset.limit) || null });
      select.append(option);
      select.value = option.value;
      apply({ remember: true });
      bskyPanel.hidden = true;
      bsky.setAttribute("aria-expanded", "false");
      status.textContent = `Signed in as ${account.handle}.`;
      textArea?.focus();
    };
    bskyGo.addEventListener("click", signInBluesky);
    for (const field of [bskyHandle, bskyPassword, bskyService]) {
      field?.addEventListener("keydown", (event) => {
        // Enter would submit the composer around these fields.
        if (event.key === "Enter") {
          event.preventDefault();
          signInBluesky();
        }
      });
    }
  }

  // A room of network posts takes posts only through an account.
  $("composer")?.addEventListener(
    "submit",
    (event) => {
      if (native || chosen.value) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      const names = [signIn && "Mastodon", bsky && "Bluesky", $("x-signin") && "X"].filter(Boolean);
      const message = names.length ? `Sign in with ${names.join(" or ")} to post in this room.` : "Choose an account to post with.";
      const composerError = $("composer-error");
      if (composerError) composerError.textContent = message;
      (signIn || bsky || select).focus();
    },
    true,
  );

  window.addEventListener("pageshow", (event) => {
    if (event.persisted) refresh();
  });

  choose();
  apply();
  refresh();
}
