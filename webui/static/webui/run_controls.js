// The run page's header (state, attempt, progress and ETA, Cancel / Resume / Clone, open
// alerts) and its chart controls (sources, smoothing, x axis, log scale, min/max band, the run
// compared). Every value from the server is shown with textContent.

import { $, el, requestJson } from "./run_dom.js";
import { GLOBAL } from "./run_series.js";
import { GLOBAL_LABEL } from "./run_charts.js";

export const ACTIVE = ["queued", "submitted", "running", "cancelling"];
const CANCELLABLE = ["pending", "queued", "submitted", "running"];
const RESUMABLE = ["failed", "cancelled", "lost"];

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return h + " h " + m + " min";
  if (m) return m + " min " + (s % 60) + " s";
  return s + " s";
}

// ---- Header ---------------------------------------------------------------------------------

export class Header {
  constructor(config, { onStatus }) {
    this.config = config;
    this.onStatus = onStatus;
    this.run = {
      status: config.status,
      attempt: config.attempt,
      resumed_from_step: config.resumed_from_step,
      last_step: config.last_step,
      total_steps: config.total_steps,
      error: config.error,
    };
    this.step = config.last_step;
    this.eta = config.progress ? config.progress.eta_seconds : null;
    this.timer = 0;
    this.bindButtons();
    this.show(this.run);
    this.showProgress(config.progress);
    this.refreshAlerts();
  }

  get active() {
    return ACTIVE.includes(this.run.status);
  }

  show(run) {
    const previous = this.run.status;
    Object.assign(this.run, run);
    const badge = $("run-status");
    badge.className = "status " + (/^[a-z]+$/.test(this.run.status) ? this.run.status : "");
    badge.textContent = this.run.status;
    badge.title = this.run.error || "";
    const attempt = $("run-attempt");
    attempt.hidden = !(this.run.attempt >= 1);
    attempt.textContent = "attempt " + this.run.attempt;
    const resumed = $("run-resumed");
    resumed.hidden = this.run.resumed_from_step === null || this.run.resumed_from_step === undefined;
    resumed.textContent = "resumed at step " + this.run.resumed_from_step;
    const error = $("run-error");
    error.hidden = !this.run.error;
    error.textContent = this.run.error || "";
    $("total-steps").textContent = this.run.total_steps;
    if (this.run.last_step !== undefined) this.setStep(this.run.last_step);
    $("run-cancel").hidden = !CANCELLABLE.includes(this.run.status);
    $("run-resume").hidden = !RESUMABLE.includes(this.run.status);
    if (!this.active) this.eta = null;
    this.showEta();
    this.schedule();
    if (previous !== this.run.status) this.onStatus(this.run);
  }

  setStep(step) {
    if (Number.isFinite(step) && !(step <= this.step)) this.step = step;
    $("last-step").textContent = this.step;
    const bar = $("run-progress");
    bar.max = Math.max(this.run.total_steps || 1, 1);
    bar.value = Math.max(0, Math.min(this.step, bar.max));
    this.showEta();
  }

  showProgress(progress) {
    if (!progress) return;
    this.eta = progress.eta_seconds;
    this.setStep(progress.step);
    this.showEta();
  }

  showEta() {
    const eta = $("run-eta");
    const total = this.run.total_steps;
    const done = Math.max(this.step, 0);
    const percent = total ? Math.min(100, Math.round((done / total) * 100)) + "%" : "";
    const left = this.active && this.eta !== null && this.eta !== undefined ? "ETA " + formatDuration(this.eta) : "";
    eta.textContent = [percent, left].filter(Boolean).join(" · ");
  }

  // While the run is active its progress and ETA are read every 15 s (the ETA comes from the
  // step times the API averages).
  schedule() {
    clearTimeout(this.timer);
    if (this.active) this.timer = setTimeout(() => this.refresh(), 15000);
  }

  async refresh() {
    try {
      const run = await requestJson("GET", "/api/v1/runs/" + this.config.id + "/");
      this.show(run);
      this.showProgress(run.progress);
    } catch (err) {
      this.schedule();
    }
  }

  bindButtons() {
    const message = $("run-action-message");
    const act = async (button, path, done) => {
      if (button.disabled) return;
      button.disabled = true;
      message.textContent = "";
      message.className = "";
      try {
        const run = await requestJson("POST", "/api/v1/runs/" + this.config.id + "/" + path + "/");
        this.show(run);
        this.showProgress(run.progress);
        message.textContent = done(run);
      } catch (err) {
        message.className = "field-error";
        message.textContent = err.message;
      } finally {
        button.disabled = !this.config.can_write;
      }
    };
    if (!this.config.can_write) return;
    $("run-cancel").addEventListener("click", () =>
      act($("run-cancel"), "cancel", (run) => (run.status === "cancelled" ? "Cancelled." : "Stop requested: the trainer saves a checkpoint first.")),
    );
    $("run-resume").addEventListener("click", () =>
      act($("run-resume"), "resume", (run) => "Resumed: attempt " + run.attempt + " is " + run.status + "."),
    );
  }

  async refreshAlerts() {
    const list = $("alerts-list");
    let body;
    try {
      body = await requestJson("GET", "/api/v1/alerts/?run=" + this.config.id + "&state=firing&page_size=50");
    } catch (err) {
      return;
    }
    const alerts = body.results || [];
    const items = alerts.map((alert) => {
      const li = el("li", "msg error");
      li.appendChild(el("strong", "", alert.rule_name));
      const where = [alert.source ? "source " + alert.source : "", "step " + alert.step].filter(Boolean).join(", ");
      li.appendChild(document.createTextNode(" (" + where + "): " + alert.message));
      return li;
    });
    list.replaceChildren(...items);
    $("run-alerts").hidden = items.length === 0;
  }
}

// ---- Controls -------------------------------------------------------------------------------

const DASH_ARRAYS = {
  solid: "",
  dash: "6,3",
  dashdot: "6,3,2,3",
  longdash: "10,3",
  longdashdot: "10,3,2,3",
};

function swatch(style) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "26");
  svg.setAttribute("height", "10");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("swatch");
  const line = document.createElementNS(ns, "line");
  line.setAttribute("x1", "1");
  line.setAttribute("x2", "25");
  line.setAttribute("y1", "5");
  line.setAttribute("y2", "5");
  line.setAttribute("stroke", style.colour);
  line.setAttribute("stroke-width", "2.5");
  const dash = style.dash in DASH_ARRAYS ? DASH_ARRAYS[style.dash] : style.dash.replace(/px/g, "");
  if (dash) line.setAttribute("stroke-dasharray", dash);
  svg.appendChild(line);
  return svg;
}

export class Controls {
  constructor(config, board, { onXAxis, onOverlay }) {
    this.board = board;
    this.shown = [];
    const form = $("run-controls");
    form.addEventListener("submit", (event) => event.preventDefault());
    this.options = $("source-options");
    this.options.addEventListener("change", () => this.applySources());
    $("sources-all").addEventListener("click", () => this.checkAll(true));
    $("sources-none").addEventListener("click", () => this.checkAll(false));

    const smoothing = $("smoothing");
    let timer = 0;
    smoothing.addEventListener("input", () => {
      $("smoothing-value").textContent = Number(smoothing.value).toFixed(2);
      clearTimeout(timer);
      timer = setTimeout(() => board.setOption("smoothing", Number(smoothing.value)), 150);
    });
    $("x-axis").addEventListener("change", (event) => onXAxis(event.target.value));
    $("log-scale").addEventListener("change", (event) => board.setOption("log", event.target.checked));
    $("minmax-band").addEventListener("change", (event) => board.setOption("band", event.target.checked));

    const overlay = $("overlay-run");
    for (const run of config.compare) {
      const option = el("option", "", "run " + run.id + ": " + run.name + " (" + run.status + ")");
      option.value = String(run.id);
      overlay.appendChild(option);
    }
    overlay.disabled = config.compare.length === 0;
    overlay.addEventListener("change", () => onOverlay(overlay.value));
  }

  // One checkbox per source of the charts, in colour order; the global aggregate last ("all").
  updateSources() {
    const styles = this.board.styles;
    const sources = Array.from(this.board.store.sources())
      .filter((source) => this.charted(source))
      .sort((a, b) => {
        const ia = styles.style(a).index;
        const ib = styles.style(b).index;
        return ia === ib ? 0 : ia < ib ? -1 : 1;
      });
    if (sources.length === this.shown.length && sources.every((s, i) => s === this.shown[i])) return;
    const unchecked = new Set(
      Array.from(this.options.querySelectorAll("input:not(:checked)"), (input) => this.shown[Number(input.dataset.index)]),
    );
    this.shown = sources;
    const labels = sources.map((source, i) => {
      const style = styles.style(source);
      const label = el("label", "source-option");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !unchecked.has(source);
      box.dataset.index = String(i);
      label.appendChild(box);
      label.appendChild(swatch(style));
      label.appendChild(el("span", source === GLOBAL ? "muted" : "", source === GLOBAL ? GLOBAL_LABEL + " (every source)" : style.label));
      return label;
    });
    this.options.replaceChildren(...labels);
    if (!sources.length) this.options.appendChild(el("span", "muted", "none yet"));
  }

  charted(source) {
    for (const chart of this.board.charts.values()) {
      if (!chart.spec.bySource) continue;
      for (const series of chart.members.keys()) if (series.source === source) return true;
    }
    return false;
  }

  checkAll(checked) {
    for (const box of this.options.querySelectorAll("input")) box.checked = checked;
    this.applySources();
  }

  // The sources unchecked are hidden; a source that appears later is shown.
  applySources() {
    const boxes = Array.from(this.options.querySelectorAll("input"));
    const hidden = new Set(boxes.filter((box) => !box.checked).map((box) => this.shown[Number(box.dataset.index)]));
    this.board.setOption("hidden", hidden);
  }
}
