// Live charts of one run: one Plotly chart per metric key, one trace per data source.
(function () {
  const root = document.getElementById("charts");
  if (!root) return;
  const runId = root.dataset.runId;
  const state = document.getElementById("live-state");
  const lastStepEl = document.getElementById("last-step");
  const charts = new Map(); // key -> {div, traces: Map(source -> index)}
  let lastStep = -1;
  let retry = 500;

  function chartFor(key) {
    let chart = charts.get(key);
    if (chart) return chart;
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.key = key;
    root.appendChild(div);
    Plotly.newPlot(div, [], { title: { text: key }, margin: { t: 40, r: 10, l: 50, b: 40 },
      xaxis: { title: { text: "step" } }, legend: { orientation: "h" } }, { responsive: true, displaylogo: false });
    chart = { div: div, traces: new Map() };
    charts.set(key, chart);
    return chart;
  }

  function addPoints(points) {
    const grouped = new Map();
    for (const p of points) {
      const id = p.key + "\u0000" + (p.source || "");
      if (!grouped.has(id)) grouped.set(id, { key: p.key, source: p.source || "", x: [], y: [] });
      const g = grouped.get(id);
      g.x.push(p.step);
      g.y.push(p.value);
      if (p.step > lastStep) lastStep = p.step;
    }
    for (const g of grouped.values()) {
      const chart = chartFor(g.key);
      let index = chart.traces.get(g.source);
      if (index === undefined) {
        Plotly.addTraces(chart.div, { x: [], y: [], mode: "lines+markers", name: g.source || "global" });
        index = chart.traces.size;
        chart.traces.set(g.source, index);
      }
      Plotly.extendTraces(chart.div, { x: [g.x], y: [g.y] }, [index]);
    }
    lastStepEl.textContent = lastStep;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(scheme + "://" + location.host + "/ws/runs/" + runId + "/");
    ws.onopen = function () {
      retry = 500;
      state.textContent = "live";
      ws.send(JSON.stringify({ type: "catch_up", after_step: lastStep }));
    };
    ws.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.type === "metrics.points") addPoints(msg.points);
      if (msg.type === "run.status") showStatus(msg.run);
      if (msg.type === "alerts.fired") {
        const div = document.createElement("div");
        div.className = "msg error";
        div.textContent = msg.alert.message;
        document.getElementById("alerts").appendChild(div);
      }
    };
    ws.onclose = function () {
      state.textContent = "reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  function showStatus(run) {
    const badge = document.getElementById("run-status");
    badge.className = "status " + run.status;
    badge.textContent = run.status + (run.attempt > 1 ? " (attempt " + run.attempt + ")" : "");
    badge.title = run.error || "";
  }
  connect();
})();
