// The reader's display settings: text size, theme, and how fast new posts appear. Kept in
// this browser for every room. theme.js applies size and theme before the first paint; this
// module is the panel that changes them.

const version = new URL(import.meta.url).search;
const { store } = await import(`./common.js${version}`);

const FONTS = ["s", "m", "l", "xl"];
const THEMES = ["system", "light", "dark"];
const SPEEDS = ["0", "1", "3", "5", "10"];

function saved(key, allowed, fallback) {
  const value = store.get(key);
  return allowed.includes(value) ? value : fallback;
}

/** Seconds between revealed posts in slow mode (0: off). */
export function savedSlow() {
  return Number(saved("hashroom.slow", SPEEDS, "0"));
}

function applyFont(font) {
  const root = document.documentElement;
  if (font === "m") root.removeAttribute("data-font");
  else root.setAttribute("data-font", font);
}

function applyTheme(theme) {
  const root = document.documentElement;
  if (theme === "system") root.removeAttribute("data-theme");
  else root.setAttribute("data-theme", theme);
}

/** Wires the display panel; `onSlow(seconds)` is told the reveal pace, now and on change. */
export function setupDisplay(panel, { onSlow }) {
  const font = saved("hashroom.font", FONTS, "m");
  const theme = saved("hashroom.theme", THEMES, "system");
  const speed = panel.querySelector("#speed");
  for (const input of panel.querySelectorAll('input[name="font"]')) input.checked = input.value === font;
  for (const input of panel.querySelectorAll('input[name="theme"]')) input.checked = input.value === theme;
  speed.value = String(savedSlow());

  panel.addEventListener("change", (event) => {
    const input = event.target;
    if (input.name === "font" && FONTS.includes(input.value)) {
      applyFont(input.value);
      store.set("hashroom.font", input.value === "m" ? null : input.value);
    } else if (input.name === "theme" && THEMES.includes(input.value)) {
      applyTheme(input.value);
      store.set("hashroom.theme", input.value === "system" ? null : input.value);
    } else if (input === speed && SPEEDS.includes(speed.value)) {
      store.set("hashroom.slow", speed.value === "0" ? null : speed.value);
      onSlow(Number(speed.value));
    }
  });
  onSlow(savedSlow());
}
