// A toast for each alert fired while the run page is open: the rule, where (source, key, step) and
// its message, in a box of role=status at the corner of the page that hides itself after a while
// (not while the pointer or the focus is on it) or when closed. Text is set with textContent.

import { el } from "./run_dom.js";

const SHOWN_MS = 10000;
const MAX_SHOWN = 4;
const SEVERITIES = ["info", "warning", "error"];

export class Toasts {
  constructor({ shownMs = SHOWN_MS } = {}) {
    this.shownMs = shownMs;
    this.box = el("div", "toasts");
    this.box.id = "toasts";
    document.body.appendChild(this.box);
  }

  show(alert) {
    const severity = SEVERITIES.includes(alert.severity) ? alert.severity : "warning";
    const toast = el("div", "toast " + severity);
    toast.setAttribute("role", "status");
    toast.dataset.alert = String(alert.id);
    toast.appendChild(el("span", "toast-title", severity + ": " + (alert.rule || "alert")));
    const close = el("button", "toast-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", () => toast.remove());
    toast.appendChild(close);
    const where = [alert.source ? "source " + alert.source : "", alert.key || "", "step " + alert.step];
    toast.appendChild(el("span", "toast-where", where.filter(Boolean).join(" · ")));
    toast.appendChild(el("p", "toast-message", alert.message || ""));
    this.box.appendChild(toast);
    while (this.box.children.length > MAX_SHOWN) this.box.firstElementChild.remove();
    this.hideLater(toast);
    return toast;
  }

  hideLater(toast) {
    let timer = 0;
    let held = 0; // the pointer and the focus hold a toast open
    const arm = () => {
      clearTimeout(timer);
      if (!held) timer = setTimeout(() => toast.remove(), this.shownMs);
    };
    const hold = (delta) => () => {
      held = Math.max(0, held + delta);
      arm();
    };
    toast.addEventListener("mouseenter", hold(1));
    toast.addEventListener("mouseleave", hold(-1));
    toast.addEventListener("focusin", hold(1));
    toast.addEventListener("focusout", hold(-1));
    arm();
  }
}
