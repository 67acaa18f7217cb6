// The moderator panel of the chat page: review queue, hosts and guests, blocks, rules and the
// action log with undo. Everything it shows comes from the moderation API and is rendered
// with textContent; it refreshes after each action, on demand, and every REFRESH_MS.

const version = new URL(import.meta.url).search;
const { api, apiFrom, el, errorText, refreshTimes } = await import(`./common.js${version}`);

// The review queue and the log change as posts arrive and other moderators act; this keeps
// them current without a socket of their own.
const REFRESH_MS = 15000;

const $ = (id) => document.getElementById(id);
const panel = $("mod-panel");
const slug = document.body.dataset.slug;
const base = `/api/chats/${encodeURIComponent(slug)}`;
const NETWORK_LABELS = { "*": "every network", native: "Hashroom", mastodon: "Mastodon", bluesky: "Bluesky", demo: "Demo", x: "X" };

function say(text) {
  $("mod-status").textContent = text;
}

function at(handle) {
  return `@${String(handle || "").replace(/^@/, "")}`;
}

function who(network, handle) {
  return network && network !== "*" ? `${at(handle)} on ${NETWORK_LABELS[network] || network}` : at(handle);
}

function setCount(id, n) {
  $(id).textContent = String(n);
}

function button(text, hidden, attrs = {}) {
  return el("button", { type: "button", className: "mod-act", ...attrs }, text, hidden ? el("span", { className: "vh", text: hidden }) : null);
}

// ---------------------------------------------------------------------------------------
// Rendering

function renderHeld(items) {
  const list = $("mod-held");
  list.replaceChildren(
    ...items.map(({ post, held_by: heldBy }) => {
      const name = post.author?.name || at(post.author?.handle);
      return el(
        "li",
        { className: "mod-item mod-held-item", "data-post-id": post.id },
        el(
          "p",
          { className: "mod-item-main" },
          el("strong", { text: name }),
          " ",
          el("span", { className: "mod-muted", text: at(post.author?.handle) }),
        ),
        el("p", { className: "mod-held-text", text: post.spoiler_text ? `CW: ${post.spoiler_text} — ${post.text}` : post.text }),
        heldBy ? el("p", { className: "mod-muted", text: `Held by the ${heldBy} rule` }) : null,
        el(
          "p",
          { className: "mod-item-actions" },
          button("Approve", ` post by ${name}`, { "data-act": "approve", "data-id": post.id }),
          " ",
          button("Reject", ` post by ${name}`, { "data-act": "reject", "data-id": post.id }),
        ),
      );
    }),
  );
  setCount("mod-held-count", items.length);
  $("mod-held-empty").hidden = items.length > 0;
  // New posts to review should not sit unseen in a closed section.
  if (items.length && !panel.dataset.heldSeen) {
    $("mod-held-section").open = true;
    panel.dataset.heldSeen = "1";
  }
}

function renderPeople(people) {
  $("mod-people").replaceChildren(
    ...people.map((p) =>
      el(
        "li",
        { className: "mod-item" },
        el("span", { className: "mod-item-main", text: `${who(p.network, p.handle)} (${p.role})` }),
        " ",
        button("Remove", ` ${p.role} ${at(p.handle)}`, {
          "data-act": "person-remove",
          "data-network": p.network,
          "data-handle": p.handle,
          "data-role": p.role,
        }),
      ),
    ),
  );
  setCount("mod-people-count", people.length);
}

function renderBlocks(blocks) {
  $("mod-blocks").replaceChildren(
    ...blocks.map((b) =>
      el(
        "li",
        { className: "mod-item" },
        el("span", { className: "mod-item-main", text: who(b.network, b.handle) }),
        " ",
        button("Unblock", ` ${at(b.handle)}`, { "data-act": "unblock", "data-network": b.network, "data-handle": b.handle }),
      ),
    ),
  );
  setCount("mod-blocks-count", blocks.length);
}

function renderRules(rules) {
  $("mod-rules").replaceChildren(
    ...rules.map((r) =>
      el(
        "li",
        { className: "mod-item" },
        el("span", { className: "mod-item-main", text: `${r.kind === "link" ? "Link to" : "Keyword"} “${r.pattern}”` }),
        " ",
        button("Remove", ` rule ${r.pattern}`, { "data-act": "rule-remove", "data-id": r.id }),
      ),
    ),
  );
  setCount("mod-rules-count", rules.length);
}

function renderLog(actions) {
  $("mod-log").replaceChildren(
    ...actions.map((a) =>
      el(
        "li",
        { className: `mod-item mod-log-item${a.undone_at ? " is-undone" : ""}`, "data-action-id": a.id },
        el("p", { className: "mod-item-main", text: a.summary }),
        el(
          "p",
          { className: "mod-muted" },
          `${a.actor} · `,
          el("time", { className: "rel-time", datetime: a.created_at, text: a.created_at }),
          a.undone_at ? ` · undone${a.undone_by ? ` by ${a.undone_by}` : ""}` : "",
        ),
        a.undoable ? el("p", { className: "mod-item-actions" }, button("Undo", `: ${a.summary}`, { "data-act": "undo", "data-id": a.id })) : null,
      ),
    ),
  );
  refreshTimes($("mod-log"));
  $("mod-log-empty").hidden = actions.length > 0;
}

function renderSources(sources) {
  $("mod-sources").replaceChildren(
    ...sources.map((s) => {
      const label = NETWORK_LABELS[s.network] || s.network;
      const b = s.budget;
      const spend = b
        ? ` · ${b.hour_reads}/${b.per_hour} posts read this hour, ${b.session_reads}/${b.per_session} this session, about $${Number(b.estimated_cost_session).toFixed(2)} this session`
        : "";
      return el("li", { className: "mod-item", "data-network": s.network }, `${label}: ${s.state}${spend}`);
    }),
  );
  $("mod-sources-empty").hidden = sources.length > 0;
}

// ---------------------------------------------------------------------------------------
// Loading

// Each load renders only if no later one started meanwhile, so a slow periodic refresh
// never overwrites what an action just loaded.
let generation = 0;

async function load() {
  const mine = ++generation;
  const [held, people, blocks, rules, actions, sources] = await Promise.all([
    api("GET", `${base}/held`),
    api("GET", `${base}/people`),
    api("GET", `${base}/blocks`),
    api("GET", `${base}/rules`),
    api("GET", `${base}/actions?limit=50`),
    api("GET", `${base}/sources`),
  ]);
  if (mine !== generation) return;
  const failed = [held, people, blocks, rules, actions].find((r) => !r.ok);
  if (failed) {
    say(`Could not load the moderation panel: ${errorText(failed.status, failed.data)}`);
    return;
  }
  renderHeld(held.data.posts);
  renderPeople(people.data.people);
  renderBlocks(blocks.data.blocks);
  renderRules(rules.data.rules);
  renderLog(actions.data.actions);
  if (sources.ok) renderSources(sources.data.sources);
}

async function act(button, method, url, body, done) {
  const section = button.closest("details");
  const response = await apiFrom(button, method, url, body);
  if (!response) return false;
  if (!response.ok) {
    say(errorText(response.status, response.data));
    return false;
  }
  await load();
  say(done(response.data));
  // The list was redrawn without the clicked button: keep keyboard focus in its section.
  if (!button.isConnected) section?.querySelector("summary")?.focus();
  return true;
}

// ---------------------------------------------------------------------------------------
// Forms

function formHandler(formId, errorId, submit) {
  const form = $(formId);
  const error = $(errorId);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    const handleInput = form.querySelector("input[type=text]");
    if (!String(handleInput.value).trim()) {
      error.textContent = "Fill this in first.";
      handleInput.setAttribute("aria-invalid", "true");
      handleInput.focus();
      return;
    }
    const submitButton = form.querySelector("button[type=submit]");
    const response = await apiFrom(submitButton, ...submit(data));
    if (!response) return;
    if (!response.ok) {
      error.textContent = errorText(response.status, response.data);
      handleInput.setAttribute("aria-invalid", "true");
      handleInput.focus();
      return;
    }
    error.textContent = "";
    handleInput.removeAttribute("aria-invalid");
    form.reset();
    await load();
    say(submit.done(data, response.data));
    handleInput.focus();
  });
}

function handleOf(value) {
  return String(value).trim().replace(/^@/, "");
}

const addPerson = (data) => ["POST", `${base}/people`, { handle: handleOf(data.handle), network: data.network, role: data.role }];
addPerson.done = (data, result) =>
  result.added && result.added.length ? `Added ${at(handleOf(data.handle))} as ${data.role}.` : `${at(handleOf(data.handle))} already is a ${data.role}.`;

const addBlock = (data) => ["PUT", `${base}/blocks`, { handle: handleOf(data.handle), network: data.network }];
addBlock.done = (data, result) => {
  if (!result.changed) return `${at(result.handle)} was already blocked.`;
  const n = result.hidden.length;
  return `Blocked ${at(result.handle)}; ${n} post${n === 1 ? "" : "s"} hidden.`;
};

const addRule = (data) => ["POST", `${base}/rules`, { kind: data.kind, pattern: String(data.pattern).trim() }];
addRule.done = (data, result) => (result.changed ? `Added the ${result.rule.kind} rule “${result.rule.pattern}”.` : "That rule already exists.");

// The tags form sends the whole list; the room (this page too) hears of it as a live frame.
const tagsForm = $("mod-tags-form");
tagsForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("mod-tags-input");
  const error = $("mod-tags-error");
  const hashtags = input.value.split(/[\s,;]+/).filter(Boolean);
  if (!hashtags.length) {
    error.textContent = "A chat follows at least one hashtag.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  const response = await apiFrom(tagsForm.querySelector("button[type=submit]"), "PUT", `${base}/hashtags`, { hashtags });
  if (!response) return;
  if (!response.ok) {
    error.textContent = errorText(response.status, response.data);
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  const tags = response.data.hashtags;
  input.value = tags.join(" ");
  setCount("mod-tags-count", tags.length);
  await load();
  say(response.data.changed ? `Now following #${tags.join(", #")}.` : "The hashtags are unchanged.");
});

formHandler("mod-people-form", "mod-people-error", addPerson);
formHandler("mod-block-form", "mod-block-error", addBlock);
formHandler("mod-rule-form", "mod-rule-error", addRule);

// ---------------------------------------------------------------------------------------
// List buttons: one listener for the panel.

panel.addEventListener("click", (event) => {
  const target = event.target.closest("button[data-act]");
  if (!target) return;
  const { act: kind, id, network, handle, role } = target.dataset;
  if (kind === "approve") act(target, "POST", `${base}/held/${id}/approve`, undefined, () => "Approved: readers see the post now.");
  else if (kind === "reject") act(target, "POST", `${base}/held/${id}/reject`, undefined, () => "Rejected: the post stays hidden.");
  else if (kind === "person-remove")
    act(target, "DELETE", `${base}/people`, { network, handle, role }, () => `Removed ${at(handle)} (${role}).`);
  else if (kind === "unblock")
    act(target, "DELETE", `${base}/blocks`, { network, handle }, (r) => `Unblocked ${at(handle)}; ${r.shown.length} post${r.shown.length === 1 ? "" : "s"} shown again.`);
  else if (kind === "rule-remove") act(target, "DELETE", `${base}/rules/${id}`, undefined, (r) => `Removed the rule “${r.rule.pattern}”.`);
  else if (kind === "undo") act(target, "POST", `${base}/actions/${id}/undo`, undefined, (r) => `Undone: ${r.action.summary}.`);
});

$("mod-refresh").addEventListener("click", async () => {
  say("Refreshing…");
  await load();
  say("Up to date.");
});

await load();
panel.dataset.ready = "true"; // loaded once: the lists reflect the server
setInterval(() => {
  if (document.visibilityState === "visible") load();
}, REFRESH_MS);
