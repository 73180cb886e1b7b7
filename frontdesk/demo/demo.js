// The demo host page's script: the FrontDesk page-API snippet (calls made before /widget.js has
// loaded are queued and replayed by it), the buttons that drive the widget, and a log of the
// widget's events. The chat itself is the real widget, loaded by the script tag in index.html.
"use strict";

window.FrontDesk =
  window.FrontDesk ||
  function () {
    (window.FrontDesk.q = window.FrontDesk.q || []).push(arguments);
  };

function logEvent(text) {
  const list = document.getElementById("events");
  if (!list) return;
  const item = document.createElement("li");
  item.textContent = new Date().toLocaleTimeString() + " " + text;
  list.prepend(item);
  while (list.children.length > 8) list.lastElementChild.remove();
}

window.FrontDesk("on", "open", () => logEvent("open"));
window.FrontDesk("on", "close", () => logEvent("close"));
window.FrontDesk("on", "message", (message) =>
  logEvent("message from " + message.role + ": " + message.text.slice(0, 60)),
);

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-widget-command]")) {
    button.addEventListener("click", () => window.FrontDesk(button.dataset.widgetCommand));
  }
});
