// The job's log, tailed from the logs API by byte offset (every 2 s while the run is active),
// and the run's artifacts with their download links. Log text is shown with textContent.

import { $, el, requestJson } from "./run_dom.js";

const POLL_MS = 2000;
const ARTIFACTS_MS = 30000;
const KEEP_CHARS = 200000; // the page keeps the log's tail; the whole log is an artifact

export function formatBytes(n) {
  if (!Number.isFinite(n)) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

export class LogTail {
  constructor(runId, isActive) {
    this.runId = runId;
    this.isActive = isActive;
    this.offset = 0;
    this.attempt = null;
    this.complete = false;
    this.timer = 0;
    this.busy = false;
    this.pre = $("run-log");
    this.trimmed = false;
    this.poll();
  }

  // A state change (e.g. a resume) starts polling again.
  poke() {
    this.complete = false;
    if (!this.busy) {
      clearTimeout(this.timer);
      this.poll();
    }
  }

  async poll() {
    this.busy = true;
    let again = false;
    try {
      const chunk = await requestJson("GET", "/api/v1/runs/" + this.runId + "/logs/?offset=" + this.offset);
      if (this.attempt !== null && chunk.attempt !== this.attempt) {
        // A new attempt has a log of its own: read it from its first byte.
        this.attempt = chunk.attempt;
        this.offset = 0;
        this.append("\n──── attempt " + chunk.attempt + " ────\n");
        again = true;
      } else {
        this.attempt = chunk.attempt;
        if (chunk.text) this.append(chunk.text);
        this.offset = chunk.next_offset;
        this.complete = chunk.complete;
        const origin = { ray: "live from Ray", storage: "stored copy", none: "" }[chunk.origin] || "";
        $("log-origin").textContent = origin ? "(" + origin + ", attempt " + chunk.attempt + ")" : "";
        again = Boolean(chunk.text) && chunk.next_offset < chunk.size; // more than one chunk waits
      }
    } catch (err) {
      $("log-origin").textContent = "(could not read the log: " + err.message + ")";
    } finally {
      this.busy = false;
    }
    if (again) this.timer = setTimeout(() => this.poll(), 0);
    else if (this.isActive() || !this.complete) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  append(text) {
    const pre = this.pre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    let all = pre.textContent + text;
    if (all.length > KEEP_CHARS) {
      const cut = all.indexOf("\n", all.length - KEEP_CHARS);
      all = all.slice(cut < 0 ? all.length - KEEP_CHARS : cut + 1);
      this.trimmed = true;
    }
    pre.textContent = all;
    $("log-empty").hidden = all.length > 0;
    if (this.trimmed) $("log-empty").textContent = "";
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}

const DOWNLOAD = /^\/api\/v1\/runs\/\d+\/artifacts\/\d+\/download\/$/;

export class Artifacts {
  constructor(runId, isActive) {
    this.runId = runId;
    this.isActive = isActive;
    this.timer = 0;
    this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      const items = await requestJson("GET", "/api/v1/runs/" + this.runId + "/artifacts/");
      this.show(Array.isArray(items) ? items : items.results || []);
    } catch (err) {
      $("artifacts-empty").textContent = "Could not list the artifacts: " + err.message;
      $("artifacts-empty").hidden = false;
    }
    if (this.isActive()) this.timer = setTimeout(() => this.refresh(), ARTIFACTS_MS);
  }

  show(items) {
    const rows = items.map((item) => {
      const tr = el("tr");
      const cell = (label, text, className) => {
        const td = el("td", className, text);
        td.dataset.label = label;
        tr.appendChild(td);
        return td;
      };
      cell("Kind", item.kind);
      cell("Step", item.step === null ? "—" : item.step);
      cell("Attempt", item.attempt);
      cell("Size", formatBytes(item.size_bytes), "nowrap");
      cell("Created", item.created_at ? new Date(item.created_at).toLocaleString() : "");
      const td = cell("Download", "");
      if (typeof item.download === "string" && DOWNLOAD.test(item.download)) {
        const a = el("a", "", "download");
        a.href = item.download;
        a.setAttribute("download", "");
        td.appendChild(a);
      }
      tr.title = item.uri || "";
      return tr;
    });
    const table = $("artifacts");
    table.querySelector("tbody").replaceChildren(...rows);
    table.hidden = rows.length === 0;
    $("artifacts-empty").hidden = rows.length > 0;
  }
}
