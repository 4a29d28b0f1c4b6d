// The channels page follows its pending deliveries: while a channel's list shows one, the list is
// read again from the API (every 1.5 s, then slower) and redrawn, until none is pending or ten
// minutes have passed. Every value is set with textContent.

import { el, requestJson } from "./run_dom.js";

const FIRST_DELAY_MS = 1500;
const MAX_DELAY_MS = 15000;
const GIVE_UP_MS = 10 * 60 * 1000;
const STATES = ["pending", "sent", "failed"];

function when(iso) {
  // The API answers in UTC (e.g. 2026-01-02T03:04:05.123456Z): shown as the page shows it.
  return typeof iso === "string" ? iso.slice(0, 19).replace("T", " ") : "";
}

function item(delivery) {
  const li = el("li");
  li.dataset.delivery = String(delivery.id);
  li.dataset.state = delivery.state;
  const state = STATES.includes(delivery.state) ? delivery.state : "";
  li.appendChild(el("span", "status " + state, delivery.state));
  li.append(" ");
  li.appendChild(el("span", "what", delivery.test ? "test" : delivery.alert ? "alert " + delivery.alert : ""));
  li.append(" ");
  li.appendChild(el("span", "when muted", when(delivery.created_at)));
  li.append(" ");
  const attempts = delivery.attempts === 1 ? "1 attempt" : delivery.attempts + " attempts";
  li.appendChild(el("span", "attempts muted", attempts));
  if (delivery.last_error) {
    li.append(" ");
    li.appendChild(el("span", "error field-error", delivery.last_error));
  }
  return li;
}

function follow(list) {
  const started = Date.now();
  let delay = FIRST_DELAY_MS;
  const path =
    "/api/v1/notification-channels/" + encodeURIComponent(list.dataset.channel) +
    "/deliveries/?page_size=" + encodeURIComponent(list.dataset.shown || "5");
  const poll = async () => {
    try {
      const body = await requestJson("GET", path);
      const deliveries = body.results || [];
      if (deliveries.length) list.replaceChildren(...deliveries.map(item));
      if (!deliveries.some((d) => d.state === "pending")) return;
    } catch (err) {
      delay = MAX_DELAY_MS; // the next read may succeed; the page shows what it had
    }
    if (Date.now() - started > GIVE_UP_MS) return;
    delay = Math.min(delay * 1.5, MAX_DELAY_MS);
    setTimeout(poll, delay);
  };
  setTimeout(poll, delay);
}

for (const list of document.querySelectorAll("ul.deliveries[data-channel]")) {
  if (list.querySelector('[data-state="pending"]')) follow(list);
}
