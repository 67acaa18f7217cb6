// Runs in <head>, before the first paint, so a reader's theme and text size never flash the
// defaults. A classic script (not a module: modules are deferred) and tiny on purpose; the
// settings panel itself lives in prefs.js. No data attribute means "follow the system".
(function () {
  var root = document.documentElement;
  // Scripts run: on a phone the room may fold its tools into a menu (compact.js) without
  // first painting them in the column.
  root.classList.add("scripts");
  try {
    var theme = window.localStorage.getItem("hashroom.theme");
    if (theme === "light" || theme === "dark") root.setAttribute("data-theme", theme);
    var font = window.localStorage.getItem("hashroom.font");
    if (font === "s" || font === "l" || font === "xl") root.setAttribute("data-font", font);
    // Per-viewer filters hide posts; keep the column invisible until chat.js has applied
    // them, so muted posts never flash (style.css shows it anyway after a few seconds).
    var slug = location.pathname.split("/")[2] || "";
    var shared = /[?&](hide|mute|words|only|view|q)=/.test(location.search);
    if (shared || window.localStorage.getItem("hashroom.filters." + decodeURIComponent(slug))) {
      root.classList.add("has-filters");
    }
  } catch (e) {
    // Storage blocked: the defaults apply.
  }
})();
