// A room's live stream, for every page that shows one (the chat page, the wall): one websocket
// to /api/chats/{slug}/live that resumes from the last applied offset, applies each frame once
// and in order, reconnects with jittered backoff, treats a silent link as dead, and follows
// the tab's visibility and the browser's online state. Pages only draw the frames.

// Reconnect delays: first retry after ~0.5 s, doubling to a 15 s cap, jittered so a server
// restart is not met by every client at the same instant.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 15000;
// The server pings every 20 s by default; three missed pings means the link is dead even if
// the browser has not noticed (phones switching networks keep half-open sockets for minutes).
const SILENCE_LIMIT_MS = 65000;

const STATE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline — will catch up",
};

function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * Follows the room `slug` live from `offset`/`epoch` (where the server-rendered page stands)
 * until the page is left; a page restored from the back/forward cache resumes.
 *
 * `status` shows the link's state ("connecting", "live", "reconnecting", "offline") in its
 * `data-state`, and its words in `statusText`. The page draws frames through:
 * - `snapshot(frame, known)`: start state; `known` is the `{offset, epoch}` held before it.
 *   The stream then stands at the snapshot's offset and epoch.
 * - `frame(frame)`: a frame newer than the last one applied (or one carrying no offset), once.
 * - `notice(frame)`, optional: notices carry no state, so with this hook they are shown
 *   whatever their offset; without it they come through `frame` in order.
 * A frame from another epoch (the room's history was rebuilt) reconnects, and the server
 * answers with a fresh snapshot.
 */
export function followLive({ slug, offset, epoch, status, statusText, snapshot, frame, notice }) {
  const live = {
    offset: Number(offset) || 0,
    epoch: String(epoch ?? ""),
    socket: null,
    attempt: 0,
    retryTimer: 0,
    silenceTimer: 0,
    leaving: false,
  };
  const url = `/api/chats/${encodeURIComponent(slug)}/live`;

  function setState(state) {
    if (status.dataset.state === state) return;
    status.dataset.state = state;
    statusText.textContent = STATE_TEXT[state];
  }

  function onFrame(data) {
    if (!data || typeof data !== "object" || data.type === "ping") return;
    if (data.type === "snapshot") {
      snapshot(data, { offset: live.offset, epoch: live.epoch });
      live.epoch = String(data.epoch ?? "");
      if (typeof data.offset === "number") live.offset = data.offset;
      return;
    }
    // Notices carry no state: the page shows each text once, whatever its offset.
    if (data.type === "notice" && notice) {
      notice(data);
      if (typeof data.offset === "number" && data.offset > live.offset) live.offset = data.offset;
      return;
    }
    if (typeof data.offset !== "number") {
      frame(data);
      return;
    }
    if (data.epoch !== undefined && String(data.epoch) !== live.epoch) {
      // The room's history was rebuilt under us; reconnecting with our old epoch makes the
      // server answer with a fresh snapshot.
      dropSocket();
      scheduleReconnect();
      return;
    }
    if (data.offset <= live.offset) return; // already applied (replay overlap)
    frame(data);
    live.offset = data.offset;
  }

  function armSilenceTimer() {
    clearTimeout(live.silenceTimer);
    live.silenceTimer = setTimeout(() => {
      dropSocket();
      scheduleReconnect();
    }, SILENCE_LIMIT_MS);
  }

  /** Forgets the current socket at once; its late events are ignored. */
  function dropSocket() {
    clearTimeout(live.silenceTimer);
    const socket = live.socket;
    live.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) {
      try {
        socket.close(1000, "client reconnecting");
      } catch {
        // Already closing.
      }
    }
  }

  function scheduleReconnect() {
    clearTimeout(live.retryTimer);
    if (live.leaving) return;
    if (!navigator.onLine) {
      setState("offline"); // the "online" event reconnects
      return;
    }
    setState("reconnecting");
    const delay = backoffDelay(live.attempt);
    live.attempt += 1;
    live.retryTimer = setTimeout(connect, delay);
  }

  function connect() {
    clearTimeout(live.retryTimer);
    if (live.socket || live.leaving) return;
    if (!navigator.onLine) {
      setState("offline");
      return;
    }
    if (live.attempt === 0) setState("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = `after=${live.offset}&epoch=${encodeURIComponent(live.epoch)}`;
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}${url}?${query}`);
    } catch {
      scheduleReconnect();
      return;
    }
    live.socket = socket;
    socket.addEventListener("open", () => {
      if (live.socket !== socket) return;
      setState("live");
      armSilenceTimer();
    });
    socket.addEventListener("message", (event) => {
      if (live.socket !== socket) return;
      // A frame, not just an accepted handshake, proves the link works: only then may the
      // next failure retry fast again.
      live.attempt = 0;
      setState("live");
      armSilenceTimer();
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      onFrame(data);
    });
    socket.addEventListener("close", () => {
      if (live.socket !== socket) return;
      live.socket = null;
      clearTimeout(live.silenceTimer);
      scheduleReconnect();
    });
  }

  window.addEventListener("online", () => {
    live.attempt = 0;
    connect();
  });
  window.addEventListener("offline", () => {
    dropSocket();
    clearTimeout(live.retryTimer);
    setState("offline");
  });
  document.addEventListener("visibilitychange", () => {
    // Phones suspend background tabs; come back live at once instead of after the backoff.
    if (document.visibilityState === "visible" && !live.socket) {
      live.attempt = 0;
      connect();
    }
  });
  window.addEventListener("pagehide", () => {
    live.leaving = true;
    clearTimeout(live.retryTimer);
    dropSocket();
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      live.leaving = false;
      live.attempt = 0;
      connect();
    }
  });

  connect();
}
