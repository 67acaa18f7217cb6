// Keyboard shortcuts for reading a fast chat, and the "?" dialog that lists them. The same
// list is in the page footer (the dialog shows a copy of it). Shortcuts never fire while the
// reader types in a field, or with Ctrl/Alt/Meta held (those belong to the browser).

/** True when a key press goes to a field the reader is typing in. */
export function isTyping(target) {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))
  );
}

/**
 * column: the feed.js Column. dialog/opener/list: the shortcuts dialog, its button and the
 * footer's <dl>. actions: reply(post), pause(), compose(), reveal() — absent ones are off.
 */
export function setupKeys({ column, dialog, opener, list, actions }) {
  let returnTo = null;

  const openDialog = () => {
    if (dialog.open) return;
    const body = dialog.querySelector("#keys-dialog-body");
    if (!body.firstElementChild && list) {
      const copy = list.cloneNode(true);
      copy.removeAttribute("id");
      body.append(copy);
    }
    returnTo = document.activeElement;
    dialog.showModal();
    dialog.querySelector("#keys-close").focus();
  };
  dialog.addEventListener("close", () => {
    if (returnTo && returnTo.isConnected) returnTo.focus({ preventScroll: true });
    returnTo = null;
  });
  dialog.querySelector("#keys-close").addEventListener("click", () => dialog.close());
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", (event) => {
    if (event.target !== dialog) return;
    const box = dialog.getBoundingClientRect();
    const inside =
      event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) dialog.close();
  });
  if (opener) opener.addEventListener("click", openDialog);

  const focusPost = (post) => {
    post.focus({ preventScroll: true });
    post.scrollIntoView({ block: "nearest" });
  };

  const move = async (dir) => {
    const active = document.activeElement;
    const current = active && active.closest ? active.closest(".post") : null;
    const inColumn = current && current.parentElement === column.feed;
    if (!inColumn) {
      const first = column.first();
      if (first) focusPost(first);
      return;
    }
    let target = column.neighbour(current, dir);
    if (!target && dir > 0 && !column.olderDone) {
      await column.loadOlder();
      target = column.neighbour(current, dir);
    } else if (!target && dir < 0 && column.above.length) {
      await column.loadNewer();
      target = column.neighbour(current, dir);
    }
    if (target) focusPost(target);
  };

  document.addEventListener("keydown", (event) => {
    if (dialog.open || event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target)) return;
    const active = document.activeElement;
    const post = active && active.closest ? active.closest(".post") : null;
    switch (event.key) {
      case "j":
      case "k":
        event.preventDefault();
        move(event.key === "j" ? 1 : -1);
        break;
      case "r":
        if (!post || !actions.reply) return;
        event.preventDefault();
        actions.reply(post);
        break;
      case "p":
        event.preventDefault();
        actions.pause();
        break;
      case "/":
        if (!actions.compose) return;
        event.preventDefault();
        actions.compose();
        break;
      case ".":
        event.preventDefault();
        actions.reveal();
        break;
      case "?":
        event.preventDefault();
        openDialog();
        break;
      default:
        break;
    }
  });

  return { openDialog };
}
