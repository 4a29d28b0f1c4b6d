// Charts of the run page: which chart each series belongs to, and drawing them with Plotly.
// History is drawn once per chart (Plotly.react); new points extend the traces in place
// (Plotly.extendTraces), batched per animation frame. Only the charts on or near the screen are
// drawn at once; the others are drawn when the browser is idle or when they scroll near, so a
// page of many charts shows its first screen first and live points cost what is seen. Source names and keys are user data: the
// page's own text is set with textContent, and everything Plotly renders as text (trace names,
// axis labels) goes through escapeHtml, because Plotly reads a subset of HTML in them.

import { el } from "./run_dom.js";
import { Changes, GLOBAL, Series } from "./run_series.js";

// Tableau 10: a source's colour is PALETTE[i % 10] and its dash DASHES[i % 6], where i is its
// place in the run's sorted source list, so every chart shows a source alike and colour is never
// the only cue (30 sources before a pair repeats). "dot" is kept for the runs compared.
export const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
];
export const DASHES = ["solid", "dash", "dashdot", "longdash", "longdashdot", "8px,3px,2px,3px,2px,3px"];
const GLOBAL_COLOUR = "#374151";
export const GLOBAL_LABEL = "all";
const OVERLAY_DASH = "dot";

export function escapeHtml(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
}

function natural(a, b) {
  return a.localeCompare(b, "en", { numeric: true });
}

// Colour and dash of every source: the run's sources in name order first, then any other source
// met in the data, in the order met (so a colour never changes while the page is open).
export class SourceStyles {
  constructor(runSources) {
    this.order = Array.from(new Set(runSources)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  index(source) {
    if (source === GLOBAL) return -1;
    let i = this.order.indexOf(source);
    if (i < 0) {
      this.order.push(source);
      i = this.order.length - 1;
    }
    return i;
  }

  meet(sources) {
    Array.from(sources).filter((s) => s !== GLOBAL && !this.order.includes(s)).sort().forEach((s) => this.index(s));
  }

  style(source) {
    const i = this.index(source);
    if (i < 0) return { colour: GLOBAL_COLOUR, dash: "solid", label: GLOBAL_LABEL, index: Infinity };
    return { colour: PALETTE[i % PALETTE.length], dash: DASHES[i % DASHES.length], label: source, index: i };
  }
}

// Debiased exponential moving average, as TensorBoard smooths scalars: the running mean starts
// at 0 and is divided by 1 - w^n, so the first points are not pulled towards 0.
export function emaStart() {
  return { last: 0, n: 0 };
}

export function emaNext(state, value, weight) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  state.last = state.last * weight + (1 - weight) * value;
  state.n += 1;
  const debias = weight === 1 ? 1 : 1 - Math.pow(weight, state.n);
  return state.last / debias;
}

function emaOf(values, weight, state) {
  return values.map((v) => emaNext(state, v, weight));
}

// ---- Which chart a series belongs to -------------------------------------------------------

export const SECTIONS = {
  "per-source": {
    empty: "No per-source metrics yet.",
    groups: [
      ["rewards", "Rewards"],
      ["signal", "Learning signal"],
      ["length", "Response length"],
      ["reflection", "Reflection"],
      ["detection", "Detection"],
      ["samples", "Samples per step"],
      ["eval", "Evaluation"],
    ],
  },
  iou: {
    empty: "No IoU threshold: this run logs no detection/iou_threshold (its reward has no IoU schedule).",
    groups: [["iou", ""]],
  },
  optimisation: {
    empty: "No optimisation metrics yet.",
    groups: [
      ["actor", "Policy update"],
      ["layers", "Gradient norm per layer (log10)"],
    ],
  },
  system: {
    empty: "No system metrics yet.",
    groups: [
      ["perf", "Time, throughput and memory"],
      ["errors", "Reward errors"],
    ],
  },
};

const RANKS = {
  "reward/final": 0, "reward/accuracy": 1, "reward/format": 2,
  "response_length/mean": 0, "response_length/correct_mean": 1, "response_length/clip_ratio": 2,
  "response_length/correct_clip_ratio": 3,
  "grpo/frac_zero_std": 0, "grpo/reward_std": 1, "grpo/adv_abs_mean": 2, "grpo/groups_refilled": 3,
  "grpo/groups_dropped": 4,
  "reflection/ratio": 0, "reflection/correct_in_reflective": 1, "reflection/ratio_in_correct": 2,
  "actor/pg_loss": 0, "actor/kl": 1, "actor/entropy": 2, "actor/clipfrac": 3, "actor/lr": 4,
  "actor/grad_norm": 5,
  "perf/step_time": 0, "perf/rollout_time": 1, "perf/reward_time": 2, "perf/update_time": 3,
  "perf/tokens_per_s": 4, "perf/peak_memory": 5,
};

// Keys drawn together, the first thick and the second thin.
const PAIRS = [
  ["response_length/correct_mean", "response_length/wrong_mean"],
  ["response_length/correct_clip_ratio", "response_length/wrong_clip_ratio"],
  ["reflection/correct_in_reflective", "reflection/correct_in_non_reflective"],
  ["reflection/ratio_in_correct", "reflection/ratio_in_wrong"],
  ["actor/clipfrac", "actor/clipfrac_lower"],
];
const PAIR_OF = new Map();
for (const keys of PAIRS) keys.forEach((key, slot) => PAIR_OF.set(key, { keys: keys, slot: slot }));

function pairOf(key) {
  const pair = PAIR_OF.get(key);
  if (pair) return pair;
  const pr = /^detection\/(precision|recall)@(\w+)$/.exec(key);
  if (pr) {
    const keys = ["detection/precision@" + pr[2], "detection/recall@" + pr[2]];
    return { keys: keys, slot: pr[1] === "precision" ? 0 : 1 };
  }
  return null;
}

function perSourceGroup(key) {
  if (key.startsWith("reward/")) return "rewards";
  if (key.startsWith("grpo/")) return "signal";
  if (key.startsWith("response_length/")) return "length";
  if (key.startsWith("reflection/")) return "reflection";
  if (key.startsWith("detection/")) return "detection";
  if (key === "count") return "samples";
  if (key.startsWith("eval/")) return "eval";
  return null;
}

function detectionRank(key) {
  if (key.startsWith("detection/iou@")) return 0;
  if (/^detection\/(precision|recall)@/.test(key)) return 1;
  if (key.startsWith("detection/map")) return 2;
  return 10;
}

function rankOf(key) {
  if (key in RANKS) return RANKS[key];
  if (key.startsWith("detection/")) return detectionRank(key);
  return 10;
}

function pairTitle(keys) {
  const slash = keys[0].indexOf("/");
  return keys[0] + " vs " + keys[1].slice(slash + 1);
}

function lineSpec(section, group, key, bySource) {
  const pair = pairOf(key);
  const id = pair ? pair.keys[0] : key;
  return {
    spec: {
      id: id,
      kind: "line",
      section: section,
      group: group,
      rank: rankOf(id),
      title: pair ? pairTitle(pair.keys) : key,
      note: pair ? "thick: " + pair.keys[0] + " · thin: " + pair.keys[1] : "",
      bySource: bySource,
      keys: pair ? pair.keys : [key],
    },
    slot: pair ? pair.slot : 0,
  };
}

const THRESHOLD_KEY = "detection/iou_threshold";

// Every chart a series is drawn on: [{spec, slot}]. A series the page does not chart (e.g.
// reflection_word/*) gets none. The detection sources' reward/accuracy is drawn a second time
// beside the IoU threshold, when the run has one.
export function placements(series, { isDetectionSource, hasThreshold }) {
  const { key, source } = series;
  const global = source === GLOBAL;
  const out = [];
  if (key === THRESHOLD_KEY) {
    if (global) {
      out.push({
        spec: {
          id: THRESHOLD_KEY, kind: "line", section: "iou", group: "iou", rank: 0,
          title: THRESHOLD_KEY, note: "dotted lines: where the schedule switches",
          bySource: false, keys: [key], lineShape: "hv", switches: true,
        },
        slot: 0,
      });
    }
    return out;
  }
  if (key === "reward/accuracy" && !global && hasThreshold() && isDetectionSource(source)) {
    out.push({
      spec: {
        id: "reward/accuracy@detection", kind: "line", section: "iou", group: "iou", rank: 1,
        title: "reward/accuracy of the detection sources", note: "dotted lines: IoU threshold switches",
        bySource: true, keys: [key], switches: true,
      },
      slot: 0,
    });
  }
  const group = perSourceGroup(key);
  if (group) {
    out.push(lineSpec("per-source", group, key, true));
  } else if (key.startsWith("actor/")) {
    out.push(lineSpec("optimisation", "actor", key, false));
  } else if (key.startsWith("grad_norm/")) {
    const module = /^grad_norm\/(vision|language)\./.exec(key);
    const name = module ? module[1] : "other";
    out.push({
      spec: {
        id: "grad_norm/" + name, kind: "heatmap", section: "optimisation", group: "layers",
        rank: { vision: 0, language: 1, other: 2 }[name],
        title: name === "other" ? "grad_norm/<other layers>" : "grad_norm/" + name + ".<layer>",
        note: "layers × steps, log10 of the gradient norm", bySource: false, keys: [], wide: true,
      },
      slot: 0,
    });
  } else if (key.startsWith("perf/")) {
    out.push(lineSpec("system", "perf", key, false));
  } else if (key === "reward_errors") {
    out.push(lineSpec("system", "errors", key, true));
  }
  return out;
}

// ---- Charts --------------------------------------------------------------------------------

const PLOTLY_CONFIG = {
  displaylogo: false,
  responsive: true,
  modeBarButtonsToRemove: ["lasso2d", "select2d"],
};

class Chart {
  constructor(board, spec) {
    this.board = board;
    this.spec = spec;
    this.members = new Map(); // Series -> slot
    this.overlays = []; // [{series, slot}] of the run compared
    this.dirty = true;
    this.figure = el("figure", "run-chart" + (spec.wide ? " wide" : ""));
    this.figure.dataset.chart = spec.id;
    const caption = el("figcaption");
    caption.appendChild(el("span", "chart-title", spec.title));
    if (spec.note) caption.appendChild(el("span", "chart-note muted", spec.note));
    this.figure.appendChild(caption);
    this.div = el("div", "chart");
    this.div.dataset.key = spec.id;
    this.figure.appendChild(this.div);
  }

  get order() {
    return [this.spec.rank, this.spec.id];
  }

  // Whether a batch of changes reaches this chart (a member series changed, or the IoU
  // threshold moved and this chart marks its switches).
  touchedBy(changes, switched) {
    if (switched && this.spec.switches) return true;
    for (const series of changes.bySeries.keys()) if (this.members.has(series)) return true;
    return false;
  }

  // Off screen, a batch is kept to extend the chart with later, merged with the batches before it.
  defer(changes, switched) {
    if (this.dirty) return;
    this.later = (this.later || new Changes()).merge(changes);
    this.laterSwitched = this.laterSwitched || switched;
  }

  get waiting() {
    return this.dirty || Boolean(this.later);
  }

  // Draw what waited: the whole chart when it must be redrawn, else the deferred batches.
  catchUp() {
    if (this.dirty) return this.render();
    const later = this.later;
    const switched = this.laterSwitched;
    this.later = null;
    this.laterSwitched = false;
    if (!later) return null;
    const done = this.extend(later);
    if (switched) this.relayoutSwitches();
    return done;
  }

  add(series, slot) {
    if (this.members.get(series) === slot) return false;
    this.members.set(series, slot);
    this.dirty = true;
    return true;
  }

  ordered(list) {
    const styles = this.board.styles;
    return list.sort((a, b) => {
      if (a.slot !== b.slot) return a.slot - b.slot;
      const ia = styles.style(a.series.source).index;
      const ib = styles.style(b.series.source).index;
      if (ia !== ib) return ia < ib ? -1 : 1;
      return natural(a.series.key, b.series.key);
    });
  }
}

class LineChart extends Chart {
  label(series) {
    const style = this.board.styles.style(series.source);
    if (this.spec.keys.length < 2) return style.label;
    return style.label + " · " + series.key.slice(series.key.indexOf("/") + 1);
  }

  visibleFor(series) {
    return !this.spec.bySource || this.board.sourceVisible(series.source);
  }

  layout() {
    const o = this.board.options;
    const layout = {
      margin: { t: 18, r: 12, b: 30, l: 52 },
      showlegend: false,
      hovermode: "x unified",
      hoverlabel: { namelength: 40 },
      font: { size: 11 },
      uirevision: o.x + ":" + o.log,
      xaxis: { type: o.x === "time" ? "date" : "linear", automargin: true, zeroline: false },
      yaxis: { type: o.log ? "log" : "linear", automargin: true, exponentformat: "SI", zeroline: false },
    };
    // Plotly shows a constant series (a fixed learning rate) on [v - 1, v + 1], where 1e-6 reads
    // as 0: give it a range around its value until a different value comes.
    this.constant = o.log ? null : constantOf([...this.members.keys(), ...this.overlays.map((m) => m.series)]);
    if (this.constant !== null) {
      const c = this.constant;
      layout.yaxis.range = [c - Math.abs(c) / 2, c + Math.abs(c) / 2];
    }
    Object.assign(layout, this.board.marks(this));
    return layout;
  }

  // Traces in a fixed order: the raw line of every series, then their smoothed lines, then their
  // min/max bands (a pair of traces each), then the run compared. this.index maps a role and a
  // series to its trace, for extendTraces.
  traces() {
    const o = this.board.options;
    const smoothing = o.smoothing > 0;
    const members = this.ordered(Array.from(this.members, ([series, slot]) => ({ series, slot })));
    const traces = [];
    this.index = { raw: new Map(), smooth: new Map(), lo: new Map(), hi: new Map() };
    this.ema = new Map();
    this.traceSeries = [];
    const push = (role, series, trace) => {
      this.index[role].set(series, traces.length);
      this.traceSeries.push(series);
      traces.push(trace);
    };
    const hover = "%{y:.4~g}";
    for (const { series, slot } of members) {
      const style = this.board.styles.style(series.source);
      const width = slot === 0 ? 2 : 1;
      const data = this.view(series);
      push("raw", series, {
        type: "scatter",
        mode: data.steps.length === 1 ? "markers" : "lines",
        x: this.board.xOf(data).slice(),
        y: data.values.slice(),
        name: escapeHtml(this.label(series)),
        line: { color: style.colour, width: smoothing ? 1 : width, dash: smoothing ? "solid" : style.dash, shape: this.spec.lineShape || "linear" },
        marker: { color: style.colour, size: 5 },
        opacity: smoothing ? 0.25 : 1,
        visible: this.visibleFor(series),
        hovertemplate: hover,
        hoverinfo: smoothing ? "skip" : "all",
      });
    }
    if (smoothing) {
      for (const { series, slot } of members) {
        const style = this.board.styles.style(series.source);
        const state = emaStart();
        this.ema.set(series, state);
        const data = this.view(series);
        push("smooth", series, {
          type: "scatter",
          mode: "lines",
          x: this.board.xOf(data).slice(),
          y: emaOf(data.values, o.smoothing, state),
          name: escapeHtml(this.label(series)),
          line: { color: style.colour, width: slot === 0 ? 2 : 1, dash: style.dash, shape: this.spec.lineShape || "linear" },
          visible: this.visibleFor(series),
          hovertemplate: hover,
        });
      }
    }
    if (o.band) {
      for (const { series } of members) {
        const style = this.board.styles.style(series.source);
        const data = this.view(series);
        const common = {
          type: "scatter",
          mode: "lines",
          x: this.board.xOf(data).slice(),
          line: { width: 0, color: style.colour, shape: this.spec.lineShape || "linear" },
          hoverinfo: "skip",
          visible: this.visibleFor(series),
          name: escapeHtml(this.label(series) + " min/max"),
        };
        push("lo", series, { ...common, y: bandOf(data.mins, data.values) });
        push("hi", series, {
          ...common,
          y: bandOf(data.maxs, data.values),
          fill: "tonexty",
          fillcolor: rgba(style.colour, 0.18),
        });
      }
    }
    const overlay = this.board.overlay;
    if (overlay) {
      for (const { series, slot } of this.ordered(this.overlays.slice())) {
        const style = this.board.styles.style(series.source);
        const y = smoothing ? emaOf(series.values, o.smoothing, emaStart()) : series.values.slice();
        this.traceSeries.push(series);
        traces.push({
          type: "scatter",
          mode: "lines",
          x: this.board.xOf(series).slice(),
          y: y,
          name: escapeHtml("run " + overlay.id + " · " + this.label(series)),
          line: { color: style.colour, width: slot === 0 ? 1.5 : 1, dash: OVERLAY_DASH, shape: this.spec.lineShape || "linear" },
          opacity: 0.8,
          visible: this.visibleFor(series),
          hovertemplate: hover,
        });
      }
    }
    return traces;
  }

  render() {
    this.dirty = false;
    this.later = null;
    this.laterSwitched = false;
    this.showZoom();
    return Plotly.react(this.div, this.traces(), this.layout(), PLOTLY_CONFIG).then(() => {
      if (this.listening) return;
      this.listening = true;
      this.div.on("plotly_relayout", (event) => this.board.relayouted(this, event));
    });
  }

  // What a trace of ``series`` draws: the series, or while zoomed its finer history of the range.
  view(series) {
    if (!this.zoom) return series;
    return this.zoom.store.get(series.key, series.source) || new Series(series.key, series.source);
  }

  showZoom() {
    if (!this.zoomNote) {
      this.zoomNote = el("span", "chart-note muted zoom-note");
      this.figure.querySelector("figcaption").appendChild(this.zoomNote);
    }
    this.zoomNote.hidden = !this.zoom;
    if (this.zoom) {
      this.zoomNote.textContent = "steps " + this.zoom.lo + "–" + this.zoom.hi + " in detail; double-click to go back";
    }
  }

  // New points of member series, appended to their traces in one extendTraces call. A zoomed
  // chart shows a range of its history and is drawn whole again when the zoom ends.
  extend(changes) {
    if (this.zoom) return null;
    const o = this.board.options;
    const update = { x: [], y: [] };
    const indices = [];
    for (const [series, entry] of changes.bySeries) {
      if (!this.members.has(series)) continue;
      if (entry.replaced || !this.index || !this.index.raw.has(series)) return this.render();
      const from = entry.from;
      const xs = this.board.xOf(series).slice(from);
      const add = (role, ys) => {
        indices.push(this.index[role].get(series));
        update.x.push(xs);
        update.y.push(ys);
      };
      add("raw", series.values.slice(from));
      if (this.index.smooth.has(series)) {
        add("smooth", emaOf(series.values.slice(from), o.smoothing, this.ema.get(series)));
      }
      if (this.index.lo.has(series)) {
        add("lo", bandOf(series.mins.slice(from), series.values.slice(from)));
        add("hi", bandOf(series.maxs.slice(from), series.values.slice(from)));
      }
    }
    if (!indices.length) return null;
    if (this.constant !== null && update.y.some((ys) => ys.some((y) => y !== null && y !== this.constant))) {
      this.constant = null;
      Plotly.relayout(this.div, { "yaxis.autorange": true });
    }
    // A trace of one point is drawn as a marker; once it has two, as a line.
    const single = indices.filter((i) => this.div.data && this.div.data[i] && this.div.data[i].mode === "markers");
    const done = Plotly.extendTraces(this.div, update, indices);
    if (single.length) return done.then(() => Plotly.restyle(this.div, { mode: "lines" }, single));
    return done;
  }

  restyleVisibility() {
    if (!this.spec.bySource || !this.div.data) return null;
    const indices = this.traceSeries.map((_, i) => i);
    const visible = this.traceSeries.map((series) => this.visibleFor(series));
    return Plotly.restyle(this.div, { visible: visible }, indices);
  }

  relayoutSwitches() {
    if (this.spec.switches && this.div.data) return Plotly.relayout(this.div, this.board.marks(this));
    return null;
  }
}

// The one value every point of ``series`` holds, when it is not 0; else null.
function constantOf(series) {
  let value = null;
  for (const s of series) {
    for (const v of s.values) {
      if (v === null) continue;
      if (value === null) value = v;
      else if (v !== value) return null;
    }
  }
  return value === 0 ? null : value;
}

function bandOf(bound, values) {
  return bound.map((b, i) => (b === null || b === undefined ? values[i] : b));
}

// Layers × steps: one row per layer of a module, one column per step, log10 of the norm. The
// columns are the trace's z arrays (transpose), so a new step extends the trace by one column.
class HeatmapChart extends Chart {
  layers() {
    return Array.from(this.members.keys()).sort((a, b) => natural(a.key, b.key));
  }

  columnsAt(layers, xs) {
    const lookups = layers.map((series) => {
      const map = new Map();
      const x = this.board.xOf(series);
      for (let i = 0; i < x.length; i++) map.set(x[i], series.values[i]);
      return map;
    });
    return xs.map((x) => lookups.map((map) => log10(map.get(x))));
  }

  render() {
    this.dirty = false;
    this.later = null;
    this.laterSwitched = false;
    const layers = this.layers();
    this.rows = layers;
    const xs = new Set();
    for (const series of layers) for (const x of this.board.xOf(series)) if (x !== null) xs.add(x);
    this.xs = Array.from(xs).sort((a, b) => a - b);
    this.lastX = this.xs.length ? this.xs[this.xs.length - 1] : -Infinity;
    const height = Math.max(220, Math.min(720, layers.length * 11 + 70));
    this.div.style.height = height + "px";
    const trace = {
      type: "heatmap",
      x: this.xs.slice(),
      y: layers.map((s) => escapeHtml(s.key.slice("grad_norm/".length))),
      z: this.columnsAt(layers, this.xs),
      transpose: true,
      colorscale: "Viridis",
      colorbar: { title: { text: "log10" }, thickness: 10 },
      hovertemplate: "%{y}<br>" + (this.board.options.x === "time" ? "%{x}" : "step %{x}") + "<br>log10 %{z:.2f}<extra></extra>",
      hoverongaps: false,
    };
    const layout = {
      margin: { t: 10, r: 10, b: 30, l: 90 },
      font: { size: 11 },
      uirevision: this.board.options.x,
      xaxis: { type: this.board.options.x === "time" ? "date" : "linear" },
      yaxis: { automargin: true, type: "category" },
      ...this.board.marks(this),
    };
    return Plotly.react(this.div, [trace], layout, PLOTLY_CONFIG);
  }

  extend(changes) {
    const fresh = new Set();
    for (const [series, entry] of changes.bySeries) {
      if (!this.members.has(series)) continue;
      if (entry.replaced || !this.rows || !this.rows.includes(series)) return this.render();
      for (const x of this.board.xOf(series).slice(entry.from)) fresh.add(x);
    }
    if (!fresh.size) return null;
    const xs = Array.from(fresh).sort((a, b) => a - b);
    if (xs[0] <= this.lastX) return this.render(); // a late layer of a step already drawn
    this.xs.push(...xs);
    this.lastX = xs[xs.length - 1];
    return Plotly.extendTraces(this.div, { x: [xs], z: [this.columnsAt(this.rows, xs)] }, [0]);
  }

  restyleVisibility() {
    return null;
  }

  relayoutSwitches() {
    return null;
  }
}

// Darker than the sources' colours (PALETTE), so a mark is not read as a series.
const SEVERITY_COLOURS = { error: "#991b1b", warning: "#92400e", info: "#1e3a8a" };

function isAlert(alert) {
  return Boolean(alert) && Number.isFinite(alert.id) && Number.isFinite(alert.step) && typeof alert.key === "string";
}

function alertsSignature(marks) {
  return marks.map(({ alert, x }) => alert.id + "@" + x + ":" + alert.state).join(",");
}

// The time of ``step`` in ``series`` (of the first step after it, when that one is missing), or null.
function timeAt(series, step) {
  const i = series.indexOf(step);
  const time = i < series.times.length ? series.times[i] : null;
  return time === undefined ? null : time;
}

function log10(value) {
  return value === undefined || value === null || !(value > 0) ? null : Math.log10(value);
}

// ---- The board: every chart of the page ----------------------------------------------------

// How far off screen (px) a chart still counts as near, so a short scroll finds it drawn.
const NEAR_MARGIN = 400;

function whenIdle(callback) {
  if (window.requestIdleCallback) return window.requestIdleCallback(callback, { timeout: 1000 });
  return setTimeout(callback, 16);
}

export class ChartBoard {
  constructor({ root, store, styles, detectionSources }) {
    this.root = root;
    this.store = store;
    this.styles = styles;
    this.detectionSources = new Set(detectionSources);
    this.options = { hidden: new Set(), smoothing: 0, x: "step", log: false, band: false };
    this.charts = new Map();
    this.overlay = null; // {id, store}
    this.alerts = new Map(); // alert id -> {id, key, source, step, severity, state, rule, message}
    this.pending = null;
    this.frame = 0;
    this.idle = 0;
    this.byFigure = new Map(); // figure element -> Chart
    // A chart that scrolls near while it waits for a redraw is redrawn at once.
    this.observer = window.IntersectionObserver
      ? new IntersectionObserver((entries) => this.cameNear(entries), { rootMargin: NEAR_MARGIN + "px 0px" })
      : null;
    this.sections = new Map();
    for (const name of Object.keys(SECTIONS)) {
      const node = root.querySelector("#section-" + name);
      this.sections.set(name, {
        node: node,
        empty: node.querySelector(".section-empty"),
        groups: node.querySelector(".chart-groups"),
        state: "loading",
      });
    }
    this.context = {
      isDetectionSource: (source) => this.detectionSources.has(source) || this.hasDetectionKeys(source),
      hasThreshold: () => this.store.get(THRESHOLD_KEY, GLOBAL) !== undefined,
    };
  }

  hasDetectionKeys(source) {
    for (const series of this.store.all()) {
      if (series.source === source && /^detection\/(iou|precision|recall|map)/.test(series.key)) return true;
    }
    return false;
  }

  // The width in pixels of one chart of a section (or of a wide one): max_points of its history.
  widthFor(section, wide) {
    const groups = this.sections.get(section).groups;
    const probeGrid = el("div", "charts");
    const probe = el("figure", "run-chart" + (wide ? " wide" : ""));
    const plot = el("div", "chart");
    probe.appendChild(plot);
    probeGrid.appendChild(probe);
    probeGrid.style.visibility = "hidden";
    groups.appendChild(probeGrid);
    const width = plot.clientWidth || groups.clientWidth || 600;
    probeGrid.remove();
    return width;
  }

  xOf(series) {
    return this.options.x === "time" ? series.times : series.steps;
  }

  sourceVisible(source) {
    return !this.options.hidden.has(source);
  }

  // Switch points of the IoU schedule: where detection/iou_threshold changes value.
  switches() {
    const series = this.store.get(THRESHOLD_KEY, GLOBAL);
    if (!series) return [];
    const xs = this.xOf(series);
    const out = [];
    let previous = null;
    for (let i = 0; i < series.values.length; i++) {
      const v = series.values[i];
      if (v === null) continue;
      if (previous !== null && v !== previous) out.push({ x: xs[i], step: series.steps[i], from: previous, to: v });
      previous = v;
    }
    return out;
  }

  switchMarks() {
    const points = this.switches();
    return {
      shapes: points.map((p) => ({
        type: "line", xref: "x", yref: "paper", x0: p.x, x1: p.x, y0: 0, y1: 1,
        line: { color: "#6b7280", width: 1, dash: "dot" },
      })),
      annotations: points.map((p) => ({
        x: p.x, xref: "x", y: 1, yref: "paper", yanchor: "bottom", showarrow: false,
        text: String(+p.from.toFixed(4)) + "→" + String(+p.to.toFixed(4)),
        font: { size: 10, color: "#374151" },
      })),
    };
  }

  // ---- Alert marks: each open or recent alert of the run, on the charts of its key and source at
  // its step (a line and a label at the foot of the chart; resolved ones faint and dotted),
  // in the same shapes and annotations as the switch marks but computed apart from them.

  setAlerts(alerts) {
    this.alerts = new Map(alerts.filter(isAlert).map((alert) => [alert.id, alert]));
    this.relayoutAlerts();
  }

  addAlert(alert) {
    if (!isAlert(alert)) return;
    this.alerts.set(alert.id, { ...this.alerts.get(alert.id), ...alert });
    this.relayoutAlerts();
  }

  // The alerts drawn on ``chart`` with their x: the step, or on the wall-time axis the time of that
  // step in the series the alert fired on (not drawn until that point is there). The alerts of a
  // source hidden by the controls are not drawn.
  alertsOn(chart) {
    if (!this.alerts.size) return [];
    const members = new Map();
    for (const series of chart.members.keys()) members.set(series.key + "\u0000" + series.source, series);
    const out = [];
    for (const alert of this.alerts.values()) {
      const series = members.get(alert.key + "\u0000" + (alert.source || GLOBAL));
      if (!series || (chart.spec.bySource && !this.sourceVisible(series.source))) continue;
      const x = this.options.x === "time" ? timeAt(series, alert.step) : alert.step;
      if (x !== null) out.push({ alert: alert, x: x, label: chart.spec.bySource ? this.styles.style(series.source).label : alert.rule });
    }
    return out.sort((a, b) => a.alert.id - b.alert.id);
  }

  alertMarks(chart) {
    const marks = this.alertsOn(chart);
    chart.alertsDrawn = alertsSignature(marks);
    const shapes = [];
    const annotations = [];
    // A label is written away from the nearer end of the x axis, so it stays inside the chart.
    let lo = Infinity;
    let hi = -Infinity;
    for (const series of marks.length ? chart.members.keys() : []) {
      const xs = this.xOf(series);
      if (xs.length) {
        lo = Math.min(lo, xs[0]);
        hi = Math.max(hi, xs[xs.length - 1]);
      }
    }
    for (const { alert, x, label } of marks) {
      const open = alert.state !== "resolved";
      const colour = SEVERITY_COLOURS[alert.severity] || SEVERITY_COLOURS.warning;
      const name = "alert-" + alert.id;
      shapes.push({
        type: "line", name: name, xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
        line: { color: colour, width: 2, dash: open ? "solid" : "dot" }, opacity: open ? 0.75 : 0.4,
      });
      const text = "⚠ " + String(label || "alert");
      annotations.push({
        name: name, x: x, xref: "x", y: 0, yref: "paper", yanchor: "bottom", xanchor: x > (lo + hi) / 2 ? "right" : "left",
        showarrow: false, bordercolor: colour, borderpad: 1,
        text: escapeHtml(text.length > 30 ? text.slice(0, 29) + "…" : text),
        hovertext: escapeHtml((alert.rule ? alert.rule + ": " : "") + (alert.message || "")),
        font: { size: 10, color: colour }, bgcolor: "rgba(255,255,255,0.85)", opacity: open ? 1 : 0.6,
      });
    }
    return { shapes: shapes, annotations: annotations };
  }

  // Everything drawn over a chart's data: the IoU switch marks (on the charts that show them),
  // then the alert marks.
  marks(chart) {
    const switches = chart.spec.switches ? this.switchMarks() : { shapes: [], annotations: [] };
    const alerts = this.alertMarks(chart);
    return {
      shapes: switches.shapes.concat(alerts.shapes),
      annotations: switches.annotations.concat(alerts.annotations),
    };
  }

  // Draw the alert marks again on the charts drawn whose marks changed; a chart waiting for a
  // redraw gets them then.
  relayoutAlerts() {
    for (const chart of this.charts.values()) {
      if (chart.dirty || !chart.div.data) continue;
      if (alertsSignature(this.alertsOn(chart)) === (chart.alertsDrawn || "")) continue;
      Plotly.relayout(chart.div, this.marks(chart));
    }
  }

  chartFor(spec) {
    let chart = this.charts.get(spec.id);
    if (chart) return chart;
    chart = spec.kind === "heatmap" ? new HeatmapChart(this, spec) : new LineChart(this, spec);
    this.charts.set(spec.id, chart);
    this.mount(chart);
    return chart;
  }

  mount(chart) {
    this.byFigure.set(chart.figure, chart);
    if (this.observer) this.observer.observe(chart.figure);
    const section = this.sections.get(chart.spec.section);
    const groupNames = SECTIONS[chart.spec.section].groups;
    let group = section.groups.querySelector('.chart-group[data-group="' + chart.spec.group + '"]');
    if (!group) {
      const title = groupNames.find(([name]) => name === chart.spec.group)[1];
      group = el("div", "chart-group");
      group.dataset.group = chart.spec.group;
      if (title) group.appendChild(el("h3", "", title));
      group.appendChild(el("div", "charts"));
      const rank = (name) => groupNames.findIndex(([n]) => n === name);
      const after = Array.from(section.groups.children).find((g) => rank(g.dataset.group) > rank(chart.spec.group));
      section.groups.insertBefore(group, after || null);
    }
    const grid = group.querySelector(".charts");
    const later = Array.from(grid.children).find((figure) => {
      const other = this.charts.get(figure.dataset.chart);
      return other && (other.spec.rank > chart.spec.rank || (other.spec.rank === chart.spec.rank && natural(other.spec.id, chart.spec.id) > 0));
    });
    grid.insertBefore(chart.figure, later || null);
  }

  // Place every series not yet on its charts (new series, or a source found to be a detection
  // source); charts that gained a series are redrawn at the next flush.
  place() {
    this.styles.meet(this.store.sources());
    for (const series of this.store.all()) {
      for (const { spec, slot } of placements(series, this.context)) this.chartFor(spec).add(series, slot);
    }
  }

  placeOverlay() {
    for (const chart of this.charts.values()) chart.overlays = [];
    if (!this.overlay) return;
    for (const series of this.overlay.store.all()) {
      for (const { spec, slot } of placements(series, this.context)) {
        const chart = this.charts.get(spec.id);
        if (chart && chart.spec.kind === "line") chart.overlays.push({ series, slot });
      }
    }
  }

  setSectionState(name, state, message) {
    const section = this.sections.get(name);
    section.state = state;
    section.message = message;
    this.updateEmpty();
  }

  updateEmpty() {
    for (const [name, section] of this.sections) {
      const hasCharts = section.groups.querySelector(".run-chart") !== null;
      section.empty.hidden = hasCharts && section.state !== "error";
      if (section.state === "loading") section.empty.textContent = "Loading…";
      else if (section.state === "error") section.empty.textContent = "Could not load: " + section.message;
      else section.empty.textContent = SECTIONS[name].empty;
    }
  }

  // A chart was zoomed or panned (or reset by a double-click): on the step axis, the range is read
  // again from the series API (``onZoom(chart, lo, hi)`` resolves to a SeriesStore), so a zoom
  // shows finer buckets than the whole run's; the latest zoom of a chart wins.
  relayouted(chart, event) {
    if (!this.onZoom || this.options.x !== "step") return;
    if (event["xaxis.autorange"]) {
      chart.zoomToken = (chart.zoomToken || 0) + 1;
      if (chart.zoom) {
        chart.zoom = null;
        chart.render();
      }
      return;
    }
    const range = event["xaxis.range"] || [event["xaxis.range[0]"], event["xaxis.range[1]"]];
    if (!Number.isFinite(range[0]) || !Number.isFinite(range[1])) return;
    const lo = Math.max(0, Math.floor(Math.min(range[0], range[1])));
    const hi = Math.max(lo, Math.ceil(Math.max(range[0], range[1])));
    const token = (chart.zoomToken || 0) + 1;
    chart.zoomToken = token;
    this.onZoom(chart, lo, hi).then(
      (store) => {
        if (chart.zoomToken !== token || this.charts.get(chart.spec.id) !== chart) return;
        chart.zoom = { store: store, lo: lo, hi: hi };
        chart.render();
      },
      () => {}, // the chart keeps the buckets it has
    );
  }

  // The charts on or near the screen, read in one pass (one layout) before anything is drawn.
  nearCharts() {
    const bottom = window.innerHeight + NEAR_MARGIN;
    const near = new Set();
    for (const chart of this.charts.values()) {
      const r = chart.figure.getBoundingClientRect();
      if (r.width > 0 && r.bottom > -NEAR_MARGIN && r.top < bottom) near.add(chart);
    }
    return near;
  }

  cameNear(entries) {
    for (const entry of entries) {
      const chart = this.byFigure.get(entry.target);
      if (entry.isIntersecting && chart && chart.waiting && this.charts.get(chart.spec.id) === chart) chart.catchUp();
    }
  }

  // Draw the charts that waited off screen while the browser is idle.
  scheduleIdle() {
    if (this.idle) return;
    this.idle = whenIdle((deadline) => {
      this.idle = 0;
      const waiting = Array.from(this.charts.values()).filter((chart) => chart.waiting);
      for (const chart of waiting) {
        chart.catchUp();
        if (deadline && deadline.timeRemaining && deadline.timeRemaining() < 8) break;
      }
      if (waiting.some((chart) => chart.waiting)) this.scheduleIdle();
    });
  }

  // Place every series and draw every chart that needs it: those near the screen now (the promise
  // waits for them), the others when the browser is idle.
  renderAll() {
    this.place();
    this.placeOverlay();
    const near = this.nearCharts();
    const done = [];
    for (const chart of near) if (chart.dirty) done.push(chart.render());
    this.scheduleIdle();
    this.updateEmpty();
    return Promise.all(done);
  }

  // Forget every chart (a reload of the whole history, e.g. on switching the x axis).
  reset(store) {
    for (const chart of this.charts.values()) {
      if (this.observer) this.observer.unobserve(chart.figure);
      this.byFigure.delete(chart.figure);
      Plotly.purge(chart.div);
      chart.figure.remove();
    }
    for (const section of this.sections.values()) section.groups.replaceChildren();
    this.charts.clear();
    this.store = store;
    this.pending = null;
  }

  // Changes of a batch of points: drawn at the next animation frame, with every other batch that
  // came before it, in one extendTraces call per chart.
  queue(changes) {
    if (changes.empty) return;
    this.pending = this.pending ? this.pending.merge(changes) : changes;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const changes = this.pending;
    this.pending = null;
    if (!changes) return;
    if (changes.created.length) this.place();
    let switched = false;
    for (const series of changes.bySeries.keys()) if (series.key === THRESHOLD_KEY) switched = true;
    const near = this.nearCharts();
    for (const chart of this.charts.values()) {
      if (!near.has(chart)) {
        if (chart.touchedBy(changes, switched)) chart.defer(changes, switched);
      } else if (chart.waiting) {
        chart.defer(changes, switched);
        chart.catchUp();
      } else {
        chart.extend(changes);
        if (switched) chart.relayoutSwitches();
      }
    }
    if (this.alerts.size && this.options.x === "time") this.relayoutAlerts();
    this.scheduleIdle();
    this.updateEmpty();
  }

  rerender() {
    this.placeOverlay();
    return this.redraw((chart) => chart.render());
  }

  // ``draw`` on the charts near the screen now; the others are redrawn whole later.
  redraw(draw) {
    const near = this.nearCharts();
    const done = [];
    for (const chart of this.charts.values()) {
      if (near.has(chart) && !chart.dirty) done.push(draw(chart));
      else if (near.has(chart)) done.push(chart.render());
      else chart.dirty = true;
    }
    this.scheduleIdle();
    return Promise.all(done);
  }

  setOption(name, value) {
    this.options[name] = value;
    if (name === "hidden") {
      this.redraw((chart) => chart.restyleVisibility());
      this.relayoutAlerts();
    } else if (name === "log") {
      this.redraw((chart) => {
        if (chart.spec.kind !== "line" || !chart.div.data) return chart.render();
        return Plotly.relayout(chart.div, { "yaxis.type": value ? "log" : "linear", "yaxis.autorange": true });
      });
    } else {
      this.rerender();
    }
  }

  setOverlay(overlay) {
    this.overlay = overlay;
    return this.rerender();
  }
}
