// A run's metric series: history from the downsampled series API, and the store every chart
// draws from. A series is the points of one (key, source); the global source is "". Points of a
// series are kept in step order with one point per step: history buckets (their last point, with
// the bucket's min and max) first, then the points that came live.

import { requestJson } from "./run_dom.js";

export const GLOBAL = "";
const GLOBAL_PARAM = "_global"; // the global source in the series API's ``sources``
export const MIN_POINTS = 10; // the series API's bounds on max_points
export const MAX_POINTS = 10000;

export function clampPoints(n) {
  return Math.max(MIN_POINTS, Math.min(MAX_POINTS, Math.round(n) || MIN_POINTS));
}

function timeOf(value) {
  if (value === null || value === undefined) return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

export class Series {
  constructor(key, source) {
    this.key = key;
    this.source = source;
    this.steps = [];
    this.values = [];
    this.mins = [];
    this.maxs = [];
    this.times = []; // ms since the epoch: when the point was stored (x = wall time)
    this.bucketedThrough = -Infinity; // the last step of a history bucket of more than one point
  }

  get lastStep() {
    return this.steps.length ? this.steps[this.steps.length - 1] : -Infinity;
  }

  // The index of ``step`` in steps, or of the first step after it.
  indexOf(step) {
    let lo = 0;
    let hi = this.steps.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.steps[mid] < step) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // One point. A step after the last one is appended ("append"). A step already held is replaced
  // when its value changed ("replace": a replayed step overwrites itself). A step missing before
  // the last one (batches of two steps that arrived out of order) is put in its place ("insert"),
  // unless it lies inside a downsampled history bucket, which already counts it ("skip").
  // ``count`` is the number of points a history bucket stands for (1 for a live point).
  add(step, value, min, max, time, count = 1) {
    if (step > this.lastStep) {
      this.steps.push(step);
      this.values.push(value);
      this.mins.push(min);
      this.maxs.push(max);
      this.times.push(time);
      if (count > 1) this.bucketedThrough = step;
      return "append";
    }
    const i = this.indexOf(step);
    if (this.steps[i] === step) {
      if (value === this.values[i]) return "skip";
      this.values[i] = value;
      const lo = Math.min(min ?? Infinity, this.mins[i] ?? Infinity);
      const hi = Math.max(max ?? -Infinity, this.maxs[i] ?? -Infinity);
      this.mins[i] = Number.isFinite(lo) ? lo : null;
      this.maxs[i] = Number.isFinite(hi) ? hi : null;
      return "replace";
    }
    if (step <= this.bucketedThrough) return "skip";
    this.steps.splice(i, 0, step);
    this.values.splice(i, 0, value);
    this.mins.splice(i, 0, min);
    this.maxs.splice(i, 0, max);
    this.times.splice(i, 0, time);
    return "insert";
  }
}

// What one batch changed: per series, the index of its first new point and whether a point was
// replaced or inserted before the end (which a chart cannot extend, so it redraws).
export class Changes {
  constructor() {
    this.bySeries = new Map(); // Series -> {from, replaced}
    this.created = []; // series seen for the first time
  }

  note(series, index, outcome) {
    if (outcome === "skip") return;
    let entry = this.bySeries.get(series);
    if (!entry) {
      entry = { from: index, replaced: false };
      this.bySeries.set(series, entry);
    }
    if (outcome === "replace" || outcome === "insert") entry.replaced = true;
  }

  get empty() {
    return this.bySeries.size === 0 && this.created.length === 0;
  }

  merge(other) {
    for (const [series, entry] of other.bySeries) {
      const mine = this.bySeries.get(series);
      if (!mine) this.bySeries.set(series, { ...entry });
      else {
        mine.from = Math.min(mine.from, entry.from);
        mine.replaced = mine.replaced || entry.replaced;
      }
    }
    for (const series of other.created) if (!this.created.includes(series)) this.created.push(series);
    return this;
  }
}

export class SeriesStore {
  constructor() {
    this.series = new Map(); // key + NUL + source -> Series
  }

  get(key, source) {
    return this.series.get(key + "\u0000" + source);
  }

  all() {
    return Array.from(this.series.values());
  }

  sources() {
    const names = new Set();
    for (const s of this.series.values()) names.add(s.source);
    return names;
  }

  ensure(key, source, changes) {
    const id = key + "\u0000" + source;
    let series = this.series.get(id);
    if (!series) {
      series = new Series(key, source);
      this.series.set(id, series);
      if (changes) changes.created.push(series);
    }
    return series;
  }

  // Buckets of a series API response ({series: [{key, source, points: [...]}]}), appended after
  // what each series holds.
  addResponse(body, changes = new Changes()) {
    for (const item of body.series || []) {
      const series = this.ensure(item.key, item.source, changes);
      for (const p of item.points) {
        const outcome = series.add(p.step, p.value, p.min, p.max, timeOf(p.time), p.count);
        changes.note(series, series.steps.length - 1, outcome);
      }
    }
    return changes;
  }

  // Points of the websocket ({step, key, source, value}). For x = wall time: ``time`` is when a
  // live batch was stored, ``stepTimes`` when each step of a catch-up was (ISO 8601); without
  // either, when the points arrived.
  addPoints(points, { time = null, stepTimes = null } = {}, changes = new Changes()) {
    const batchTime = timeOf(time) ?? Date.now();
    const sorted = points.slice().sort((a, b) => a.step - b.step);
    for (const p of sorted) {
      const series = this.ensure(p.key, p.source || GLOBAL, changes);
      const at = (stepTimes && timeOf(stepTimes[p.step])) ?? batchTime;
      const outcome = series.add(p.step, p.value, p.value, p.value, at);
      changes.note(series, series.steps.length - 1, outcome);
    }
    return changes;
  }
}

// GET /api/v1/runs/{run}/series/ with the page's session; resolves to the JSON body, rejects with
// an Error whose status and message come from the API's error shape.
export async function fetchSeries(runId, { keys, sources, maxPoints, startStep, endStep, x }) {
  const params = new URLSearchParams();
  params.set("keys", keys.join(","));
  if (sources) params.set("sources", sources.map((s) => (s === GLOBAL ? GLOBAL_PARAM : s)).join(","));
  params.set("max_points", String(clampPoints(maxPoints)));
  if (startStep !== undefined && startStep !== null && startStep > 0) params.set("start_step", String(startStep));
  if (endStep !== undefined && endStep !== null) params.set("end_step", String(endStep));
  if (x === "time") params.set("x", "time");
  return requestJson("GET", "/api/v1/runs/" + encodeURIComponent(runId) + "/series/?" + params);
}

// The history requests of the page: a section's series come in one or two requests. Each entry
// names the section whose width sets max_points; split is used when a request matches more keys
// than the API allows in one (a model with very many layers).
export const REQUESTS = [
  {
    name: "rewards",
    section: "per-source",
    keys: ["reward/*", "grpo/*", "response_length/*", "reflection/*"],
  },
  { name: "detection", section: "per-source", keys: ["detection/*", "count", "eval/*"] },
  { name: "actor", section: "optimisation", keys: ["actor/*"] },
  {
    name: "layers",
    section: "optimisation",
    wide: true,
    keys: ["grad_norm/*"],
    split: [["grad_norm/vision.*"], ["grad_norm/language.*"], ["grad_norm/connector.*", "grad_norm/other"]],
  },
  { name: "system", section: "system", keys: ["perf/*", "reward_errors"] },
];

// One request of REQUESTS, falling back to its split when the API refuses too many keys; resolves
// to a list of bodies.
export async function fetchRequest(runId, request, options) {
  try {
    return [await fetchSeries(runId, { ...options, keys: request.keys })];
  } catch (err) {
    if (!(err.status === 400 && request.split)) throw err;
    return Promise.all(request.split.map((keys) => fetchSeries(runId, { ...options, keys: keys })));
  }
}
