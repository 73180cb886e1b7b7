// The demo page's chat: a plain client of the widget HTTP API (sessions, conversations,
// messages with an SSE answer stream). Text is always inserted with textContent, never as HTML.
"use strict";

const SITE_ID = document.body.dataset.siteId || "site_demo";
const API = "/api/widget/v1";
const store = {
  get: (k) => window.localStorage.getItem(`frontdesk:${SITE_ID}:${k}`),
  set: (k, v) => window.localStorage.setItem(`frontdesk:${SITE_ID}:${k}`, v),
};
let session = null;
let conversationId = store.get("conversation");
const list = document.getElementById("messages");
const status = document.getElementById("status");

function setStatus(text, offline) {
  status.textContent = text;
  status.classList.toggle("offline", Boolean(offline));
}

async function call(path, options = {}, retry = true) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (session) headers.Authorization = "Bearer " + session.access_token;
  const response = await fetch(API + path, { ...options, headers });
  if (response.status === 401 && retry && session) {
    await refresh();
    return call(path, options, false);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error((body.error && body.error.message) || response.statusText);
    error.code = body.error && body.error.code;
    throw error;
  }
  return response;
}

function remember(body) {
  session = body;
  store.set("visitor", body.visitor_id);
  store.set("refresh", body.refresh_token);
}

async function refresh() {
  const token = store.get("refresh");
  const response = await fetch(API + "/sessions/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: token }),
  });
  if (response.ok) return remember(await response.json());
  session = null;
  return start();
}

async function start() {
  const body = { site_id: SITE_ID, visitor_id: store.get("visitor") || undefined };
  const response = await call("/sessions", { method: "POST", body: JSON.stringify(body) });
  remember(await response.json());
}

function render(message) {
  let item = document.getElementById(message.id);
  if (!item) {
    item = document.createElement("li");
    item.id = message.id;
    list.appendChild(item);
  }
  item.className = message.role;
  item.textContent = message.text;
  if (message.citations && message.citations.length) {
    const sources = document.createElement("ul");
    sources.className = "citations";
    for (const citation of message.citations) {
      const entry = document.createElement("li");
      entry.textContent = "Source: " + citation.title;
      sources.appendChild(entry);
    }
    item.appendChild(sources);
  }
  item.scrollIntoView({ block: "end" });
}

function renderDelta(frame) {
  let item = document.getElementById(frame.message_id);
  if (!item) {
    item = document.createElement("li");
    item.id = frame.message_id;
    item.className = "assistant pending";
    list.appendChild(item);
  }
  item.textContent += frame.text;
}

async function loadHistory() {
  if (!conversationId) {
    const response = await call("/conversations", { method: "POST" });
    conversationId = (await response.json()).id;
    store.set("conversation", conversationId);
  }
  const response = await call(`/conversations/${conversationId}/messages?after_seq=0&limit=200`);
  (await response.json()).messages.forEach(render);
}

async function readStream(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
      if (!data) continue;
      const frame = JSON.parse(data);
      if (frame.type === "message") render(frame.message);
      else if (frame.type === "delta") renderDelta(frame);
      else if (frame.type === "error") setStatus(frame.message, true);
    }
  }
}

async function send(text) {
  const clientId = crypto.randomUUID();
  const response = await call(`/conversations/${conversationId}/messages`, {
    method: "POST",
    headers: { Accept: "text/event-stream" },
    body: JSON.stringify({ client_id: clientId, text }),
  });
  await readStream(response);
}

document.getElementById("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  try {
    await send(text);
    setStatus("online");
  } catch (error) {
    setStatus("Could not send: " + error.message, true);
  }
});

(async () => {
  try {
    await start();
    try {
      await loadHistory();
    } catch (error) {
      if (error.code !== "not_found") throw error;
      conversationId = null;
      await loadHistory();
    }
    setStatus("online");
  } catch (error) {
    setStatus("Offline: " + error.message, true);
  }
})();
