// The room on a phone (style.css, "phone layout"): the column comes first. The tools fold into
// one menu under the sticky room bar, the pinned bar shows the latest pin until opened, and the
// composer is a one-line bar fixed at the bottom that opens while the writer is in it and stays
// above the on-screen keyboard. Wider screens keep the page as rendered; crossing the width
// puts every moved part back where the server placed it.

// The same width as the media query in style.css.
const NARROW = window.matchMedia("(max-width: 37.5rem)");

const root = document.documentElement;
const $ = (id) => document.getElementById(id);
const head = document.querySelector(".room-head");
const toggle = $("tools-toggle");
const tools = $("tools");
const moved = $("tools-moved");
const closeButton = $("tools-close");
const pins = $("pins");
const pinList = $("pin-list");
const pinsExpand = $("pins-expand");
const dock = document.querySelector(".composer-wrap");
const textArea = $("post-text");

// What the menu holds on a phone, in the menu's order. Each leaves a marker where it was.
const MOVABLE = [
  head?.querySelector(".room-desc"),
  // The reading tools before a moderator's long panel.
  $("reader"),
  $("notify"),
  $("post-as"),
  $("past-questions"),
].filter(Boolean);
const markers = new Map(MOVABLE.map((node) => [node, document.createComment("")]));
for (const [node, marker] of markers) node.before(marker);

function setVar(name, px) {
  root.style.setProperty(name, `${Math.max(0, Math.round(px))}px`);
}

// ---------------------------------------------------------------------------------------
// The menu: a disclosure. Escape or Close shuts it and gives focus back to the button.

function isOpen() {
  return toggle.getAttribute("aria-expanded") === "true";
}

function openMenu() {
  setVar("--tools-top", head.getBoundingClientRect().bottom);
  toggle.setAttribute("aria-expanded", "true");
  tools.classList.add("is-open");
  tools.scrollTop = 0;
  tools.focus({ preventScroll: true });
}

/** Closes the menu; focus goes back to the menu button when it was inside (or `refocus`). */
function closeMenu({ refocus = false } = {}) {
  if (!isOpen()) return;
  const inside = tools.contains(document.activeElement);
  toggle.setAttribute("aria-expanded", "false");
  tools.classList.remove("is-open");
  if (refocus || inside) toggle.focus({ preventScroll: true });
}

toggle.addEventListener("click", () => (isOpen() ? closeMenu({ refocus: true }) : openMenu()));
closeButton.addEventListener("click", () => closeMenu({ refocus: true }));

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || !isOpen() || event.defaultPrevented) return;
  // An open dialog (keyboard shortcuts) closes first.
  if (document.querySelector("dialog[open]")) return;
  event.preventDefault();
  closeMenu({ refocus: true });
});

// Tabbing out of the sheet (to the column it covers) closes it.
tools.addEventListener("focusout", (event) => {
  const next = event.relatedTarget;
  if (isOpen() && next && !tools.contains(next) && next !== toggle) closeMenu();
});

// A link in the menu (a past question, the wall) leads away from it.
tools.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='#']");
  if (link && NARROW.matches) closeMenu();
});

// ---------------------------------------------------------------------------------------
// The pinned bar: the latest pin until opened.

function syncPins() {
  const pinsShown = pinList.children.length;
  const last = pinList.lastElementChild?.querySelector(".pin-link");
  const clipped = Boolean(last && last.scrollHeight > last.clientHeight + 1);
  const expandable = pinsShown > 1 || clipped || pins.classList.contains("is-open");
  pins.classList.toggle("can-expand", expandable);
  if (!expandable) setPinsOpen(false);
}

function setPinsOpen(open) {
  pins.classList.toggle("is-open", open);
  pinsExpand.setAttribute("aria-expanded", String(open));
}

pinsExpand.addEventListener("click", () => setPinsOpen(!pins.classList.contains("is-open")));
pinList.addEventListener("click", (event) => {
  if (event.target.closest(".pin-link")) setPinsOpen(false);
});
new MutationObserver(syncPins).observe(pinList, { childList: true });

// ---------------------------------------------------------------------------------------
// The composer bar: opens while the writer is in it. Closing waits for a tap or focus outside,
// not for blur alone: a tapped button does not take focus in every browser.

function setDockOpen(open) {
  if (!dock || dock.classList.contains("is-open") === open) return;
  dock.classList.toggle("is-open", open);
}

if (dock) {
  // Only a field opens it: a tap on Post in the one-line bar must not move the button away
  // between touching it and letting go.
  dock.addEventListener("focusin", (event) => {
    if (event.target.matches("textarea, input, select")) setDockOpen(true);
  });
  document.addEventListener("pointerdown", (event) => {
    if (!dock.contains(event.target)) setDockOpen(false);
  });
  document.addEventListener("focusin", (event) => {
    if (!dock.contains(event.target)) setDockOpen(false);
  });
}

// ---------------------------------------------------------------------------------------
// Measures the fixed and sticky parts the page must leave room for.

function measure() {
  const narrow = NARROW.matches;
  setVar("--head-height", narrow ? head.offsetHeight : 0);
  if (dock && !dock.classList.contains("is-open")) setVar("--dock-height", narrow ? dock.offsetHeight : 0);
  syncPins();
}

// The on-screen keyboard: where it only shrinks the visual viewport (Safari), the bar follows
// the visual viewport's bottom; where it shrinks the layout viewport (interactive-widget), this
// stays 0.
function followKeyboard() {
  const view = window.visualViewport;
  if (!view) return;
  const covered = window.innerHeight - (view.height + view.offsetTop);
  setVar("--kb-inset", NARROW.matches ? covered : 0);
}

if (window.visualViewport) {
  window.visualViewport.addEventListener("resize", followKeyboard);
  window.visualViewport.addEventListener("scroll", followKeyboard);
}

// ---------------------------------------------------------------------------------------
// Switching layouts.

function apply() {
  const narrow = NARROW.matches;
  if (narrow) {
    // A named region only where it is a sheet of its own; on wide screens it is no landmark.
    tools.setAttribute("role", "region");
    tools.setAttribute("aria-labelledby", "tools-title");
    moved.append(...MOVABLE);
    textArea?.setAttribute("placeholder", `Post to #${document.body.dataset.hashtag}…`);
  } else {
    closeMenu();
    setPinsOpen(false);
    for (const [node, marker] of markers) marker.after(node);
    tools.removeAttribute("role");
    tools.removeAttribute("aria-labelledby");
    textArea?.removeAttribute("placeholder");
  }
  measure();
  followKeyboard();
}

if ("ResizeObserver" in window) {
  const observer = new ResizeObserver(measure);
  observer.observe(head);
  if (dock) observer.observe(dock);
  observer.observe(pinList);
}
NARROW.addEventListener("change", apply);
apply();
