// The live run page: history from the series API, new points from the websocket, drawn in
// place. Modules: run_series.js (history and the store), run_charts.js (Plotly drawing),
// run_live.js (websocket), run_controls.js (header, buttons and chart controls), run_logs.js
// (log tail and artifacts), run_toast.js (a toast for each alert fired). This one wires them
// together.

import { Changes, SeriesStore, REQUESTS, fetchRequest, fetchSeries } from "./run_series.js";
import { ChartBoard, SourceStyles } from "./run_charts.js";
import { Live } from "./run_live.js";
import { Controls, Header } from "./run_controls.js";
import { Artifacts, LogTail } from "./run_logs.js";
import { Toasts } from "./run_toast.js";
import { requestJson } from "./run_dom.js";

const DETECTION_TASKS = ["detection", "grounding"];
const RECENT_ALERTS = 50; // besides the open ones, the run's latest alerts are marked on the charts

// Plotly (1.5 MB) loads async: the history is fetched and stored while the browser compiles it,
// and the charts are drawn once both are there.
const plotlyReady = new Promise((resolve, reject) => {
  if (window.Plotly) return resolve();
  const tag = document.getElementById("plotly");
  tag.addEventListener("load", () => resolve());
  tag.addEventListener("error", () => reject(new Error("the chart library did not load; reload the page")));
});

const config = JSON.parse(document.getElementById("run-config").textContent);
const root = document.getElementById("charts");
const liveState = document.getElementById("live-state");

const styles = new SourceStyles(config.sources.map((s) => s.name));
const board = new ChartBoard({
  root: root,
  store: new SeriesStore(),
  styles: styles,
  detectionSources: config.sources.filter((s) => DETECTION_TASKS.includes(s.task_type)).map((s) => s.name),
});

let logs = null;
let artifacts = null;
const header = new Header(config, {
  onStatus: () => {
    if (logs) logs.poke();
    if (artifacts) artifacts.refresh();
    refreshOpenAlerts();
  },
});
const toasts = new Toasts();

// An alert as the charts mark it, from the alerts API (rule_name) or the websocket (rule).
function markOf(alert) {
  return {
    id: alert.id,
    key: alert.key || "",
    source: alert.source || "",
    step: alert.step,
    severity: alert.severity,
    state: alert.state,
    rule: alert.rule_name !== undefined ? alert.rule_name : alert.rule,
    message: alert.message,
  };
}

// The run's open alerts and its latest ones, marked on the charts; and the number of open alerts
// of the project in the nav. Read again (once, shortly after) when an alert fires or the run's
// state changes.
async function loadAlertMarks() {
  const base = "/api/v1/alerts/?run=" + encodeURIComponent(config.id);
  const answers = await Promise.allSettled([
    requestJson("GET", base + "&state=firing&page_size=500"),
    requestJson("GET", base + "&state=acknowledged&page_size=500"),
    requestJson("GET", base + "&page_size=" + RECENT_ALERTS),
  ]);
  if (answers.some((answer) => answer.status === "rejected")) return;
  board.setAlerts(answers.flatMap((answer) => answer.value.results || []).map(markOf));
}

async function countNavAlerts() {
  const badge = document.getElementById("nav-open-alerts");
  if (!badge) return;
  const base = "/api/v1/alerts/?project=" + encodeURIComponent(config.project) + "&page_size=1&state=";
  try {
    const [firing, acknowledged] = await Promise.all([
      requestJson("GET", base + "firing"),
      requestJson("GET", base + "acknowledged"),
    ]);
    const count = firing.count + acknowledged.count;
    badge.querySelector(".count").textContent = String(count);
    badge.hidden = !(count > 0);
  } catch (err) {
    // the badge keeps the number it had
  }
}

let alertsTimer = 0;
function refreshOpenAlerts() {
  clearTimeout(alertsTimer);
  alertsTimer = setTimeout(() => {
    loadAlertMarks();
    countNavAlerts();
  }, 500);
}
logs = new LogTail(config.id, () => header.active);
artifacts = new Artifacts(config.id, () => header.active);

// max_points of a request: one bucket for every 2 pixels of the charts it feeds. A line of one
// point per 2 px looks the same as one per pixel, and a spike inside a bucket still shows in its
// min/max band; the history to read and parse is half as large.
const PIXELS_PER_POINT = 2;
function maxPointsFor(request) {
  return board.widthFor(request.section, request.wide) / PIXELS_PER_POINT;
}

// A zoomed chart's range, read again at the chart's resolution: its series only.
board.onZoom = async (chart, lo, hi) => {
  const members = Array.from(chart.members.keys());
  const keys = Array.from(new Set(members.map((series) => series.key)));
  const sources = Array.from(new Set(members.map((series) => series.source)));
  const body = await fetchSeries(config.id, {
    keys: keys,
    sources: sources.some((name) => name.includes(",")) ? undefined : sources,
    maxPoints: chart.div.clientWidth / PIXELS_PER_POINT,
    startStep: lo,
    endStep: hi,
  });
  const store = new SeriesStore();
  store.addResponse(body);
  return store;
};

// Every history request of the page from ``startStep`` into ``store``; resolves to the changes and
// the step every series is complete through (the smallest last_step the responses saw).
// ``arrived(index)`` is called as each request (REQUESTS[index]) is answered or fails, so a section
// can be drawn before the others are in. The server answers one request of a page at a time, so
// the first request (the top of the page) is sent alone and the others after it.
async function load(runId, store, startStep, { sectionStates, arrived } = {}) {
  const options = { startStep: startStep, x: board.options.x };
  const changes = new Changes();
  let through = Infinity;
  const read = async (request, index) => {
    try {
      const bodies = await fetchRequest(runId, request, { ...options, maxPoints: maxPointsFor(request) });
      for (const body of bodies) {
        store.addResponse(body, changes);
        through = Math.min(through, body.last_step);
      }
    } finally {
      if (arrived) arrived(index);
    }
  };
  const [first, ...rest] = REQUESTS;
  const results = [(await Promise.allSettled([read(first, 0)]))[0]];
  results.push(...(await Promise.allSettled(rest.map((request, i) => read(request, i + 1)))));
  const failed = new Map();
  results.forEach((result, i) => {
    if (result.status === "rejected") failed.set(REQUESTS[i].section, result.reason.message);
  });
  if (sectionStates) {
    for (const request of REQUESTS) {
      const message = failed.get(request.section);
      board.setSectionState(request.section, message ? "error" : "ready", message);
    }
    board.setSectionState("iou", failed.has("per-source") ? "error" : "ready", failed.get("per-source"));
  }
  return { changes: changes, through: Number.isFinite(through) ? through : null };
}

const live = new Live(config.id, {
  apply(points, times) {
    const changes = board.store.addPoints(points, times);
    board.queue(changes);
    let top = -1;
    for (const p of points) if (p.step > top) top = p.step;
    header.setStep(top);
    if (changes.created.length) requestAnimationFrame(() => controls.updateSources());
  },
  async gap(startStep) {
    const { changes, through } = await load(config.id, board.store, startStep);
    board.queue(changes);
    if (changes.created.length) requestAnimationFrame(() => controls.updateSources());
    return through === null ? startStep - 1 : through;
  },
  status(run) {
    header.show(run);
  },
  alert(alert) {
    header.refreshAlerts();
    toasts.show(alert);
    board.addAlert(markOf({ ...alert, state: "firing" }));
    refreshOpenAlerts();
  },
  state(text) {
    liveState.textContent = text;
  },
});

// The whole history again (first load, or the x axis switched between step and wall time);
// live points wait meanwhile and are drawn after it.
async function reload() {
  return live.hold(async () => {
    const store = new SeriesStore();
    board.reset(store);
    for (const name of ["per-source", "iou", "optimisation", "system"]) board.setSectionState(name, "loading");
    // The history is drawn in page order as it comes: once the requests of everything above are
    // in, so what is drawn on screen stays there (see ChartBoard for the charts off screen).
    const drawn = [];
    const answered = REQUESTS.map(() => false);
    let upTo = 0;
    const { through } = await load(config.id, store, 0, {
      sectionStates: true,
      arrived(index) {
        answered[index] = true;
        const before = upTo;
        while (upTo < answered.length && answered[upTo]) upTo += 1;
        if (upTo > before) drawn.push(plotlyReady.then(() => board.renderAll()));
      },
    });
    await Promise.all(drawn);
    await plotlyReady;
    await board.renderAll();
    if (overlayId) {
      await loadOverlay(overlayId);
      await board.rerender();
    }
    controls.updateSources();
    live.raise(through === null ? config.last_step : through);
    return through;
  });
}

let overlayId = "";
async function loadOverlay(id) {
  const store = new SeriesStore();
  await load(id, store, 0);
  board.overlay = { id: id, store: store };
}

const controls = new Controls(config, board, {
  onXAxis(value) {
    board.options.x = value === "time" ? "time" : "step";
    reload();
  },
  async onOverlay(id) {
    overlayId = id;
    const message = document.getElementById("run-action-message");
    if (!id) return board.setOverlay(null);
    try {
      await loadOverlay(id);
      await board.rerender();
    } catch (err) {
      message.className = "field-error";
      message.textContent = "Could not load run " + id + ": " + err.message;
    }
  },
});

loadAlertMarks();
reload()
  .then((through) => live.start(through === null ? config.last_step : through))
  .catch((err) => {
    for (const name of ["per-source", "iou", "optimisation", "system"]) board.setSectionState(name, "error", err.message);
  });
