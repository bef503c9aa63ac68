// The viewer's only script. Message data is put into the page with textContent and
// attributes, never parsed as markup; message HTML lives in the sandboxed iframe.
// The list follows the server's events (/api/events): it updates when mail arrives, with
// no polling; the search box filters it with the same language as the API's ?q=.
"use strict";

const SEARCH_DELAY_MS = 150;
const $ = (id) => document.getElementById(id);
let current = null;
let lastList = "";
let searchTimer = null;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function messageUrl(id) {
  return "/api/messages/" + encodeURIComponent(id);
}

function query() {
  return $("search").value.trim();
}

async function refresh() {
  let response;
  const q = query();
  try {
    response = await fetch("/api/messages" + (q ? "?q=" + encodeURIComponent(q) : ""),
      { cache: "no-cache" });
  } catch (error) {
    $("count").textContent = "sink not reachable";
    return;
  }
  if (!response.ok) return;
  const text = await response.text();
  if (q !== query()) return;  // the search changed meanwhile; its own refresh follows
  if (text === lastList) return;
  lastList = text;
  renderList(JSON.parse(text), q);
}

function renderList(data, q) {
  const noun = data.total === 1 ? " message" : " messages";
  $("count").textContent = data.total + noun + (q ? " found" : "");
  $("empty").textContent = q ? "No message matches the search." : "No messages yet. Send one to the SMTP port.";
  $("empty").hidden = data.total > 0;
  const rows = data.messages.map((item) => {
    const row = element("li", item.id === current ? "message selected" : "message");
    row.dataset.id = item.id;
    const link = element("a");
    link.href = "#/messages/" + encodeURIComponent(item.id);
    link.append(element("div", "subject", item.subject || "(no subject)"));
    const when = new Date(item.received_at).toLocaleTimeString();
    const from = item.from_header || item.from || "<>";
    link.append(element("div", "meta", when + "  " + from + " \u2192 " + item.to.join(", ")));
    row.append(link);
    return row;
  });
  $("list").replaceChildren(...rows);
  if (current && !data.messages.some((item) => item.id === current)) {
    location.hash = "";
  }
}

async function openMessage(id) {
  const response = await fetch(messageUrl(id), { cache: "no-cache" });
  if (!response.ok) {
    current = null;
    $("detail").hidden = true;
    return;
  }
  const message = await response.json();
  current = id;
  for (const row of $("list").children) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
  $("subject").textContent = message.subject || "(no subject)";
  $("from").textContent = message.from_header || message.from || "<>";
  $("to").textContent = headerValue(message, "To") || message.to.join(", ");
  $("envelope").textContent = (message.from || "<>") + " \u2192 " + message.to.join(", ");
  $("received").textContent = new Date(message.received_at).toLocaleString() + " (" + message.size + " bytes)";
  $("download").href = messageUrl(id) + "/eml";
  $("html-frame").src = messageUrl(id) + "/html";
  $("text").textContent = message.text || "(no text part)";
  $("links").replaceChildren(...message.links.map((href) => {
    const item = element("li");
    const link = element("a", null, href);
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    item.append(link);
    return item;
  }));
  $("headers").replaceChildren(...message.headers.map((header) => {
    const row = element("tr");
    row.append(element("td", null, header.name), element("td", null, header.value));
    return row;
  }));
  $("raw").textContent = "";
  $("attachments").replaceChildren(...message.attachments.map((attachment) => {
    const item = element("li");
    const link = element("a", null, (attachment.filename || "attachment") + " (" +
      attachment.content_type + ", " + attachment.size + " bytes)");
    link.href = attachment.url;
    link.download = attachment.filename || "attachment";
    item.append(link);
    return item;
  }));
  $("detail").hidden = false;
  if (selectedTab() === "raw") loadRaw();
}

function headerValue(message, name) {
  const header = message.headers.find((item) => item.name.toLowerCase() === name.toLowerCase());
  return header ? header.value : "";
}

function selectedTab() {
  const selected = document.querySelector('#tabs [aria-selected="true"]');
  return selected ? selected.dataset.tab : "html";
}

async function loadRaw() {
  if (!current) return;
  const response = await fetch(messageUrl(current) + "/raw", { cache: "no-cache" });
  $("raw").textContent = response.ok ? await response.text() : "(gone)";
}

function showTab(name) {
  for (const tab of document.querySelectorAll("#tabs [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll(".panel")) {
    panel.hidden = panel.dataset.panel !== name;
  }
  if (name === "raw") loadRaw();
}

async function remove(url) {
  await fetch(url, { method: "DELETE" });
  lastList = "";
  if (location.hash) location.hash = "";
  await refresh();
}

function route() {
  const match = /^#\/messages\/([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (match) {
    openMessage(match[1]);
  } else {
    current = null;
    $("detail").hidden = true;
    $("html-frame").removeAttribute("src");
    for (const row of $("list").children) row.classList.remove("selected");
  }
}

$("tabs").addEventListener("click", (event) => {
  const tab = event.target.closest("[role=tab]");
  if (tab) showTab(tab.dataset.tab);
});
$("delete-all").addEventListener("click", () => remove("/api/messages"));
$("delete-one").addEventListener("click", () => current && remove(messageUrl(current)));
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refresh, SEARCH_DELAY_MS);
});
window.addEventListener("hashchange", route);

function follow() {
  // EventSource reconnects by itself after a restart of the sink (the server sends retry:).
  const events = new EventSource("/api/events");
  events.addEventListener("change", () => refresh());
  events.addEventListener("error", () => {
    $("count").textContent = "sink not reachable";
    lastList = "";
  });
}

refresh().then(route);
follow();
