// The transcript page: times in the reader's own time zone (the page shows UTC without it).

const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

for (const node of document.querySelectorAll("time.local-time[datetime]")) {
  const date = new Date(node.getAttribute("datetime"));
  if (Number.isNaN(date.getTime())) continue;
  node.title = node.textContent;
  node.textContent = format.format(date);
}
