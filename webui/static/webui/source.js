// Source page: statistics charts (Plotly from our static files) and a paged preview of samples,
// each with its image, ground-truth boxes drawn over it, and a box to score a pasted response.
// Everything from the data is shown with textContent or SVG attributes, never parsed as HTML.
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 5;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRFToken"] = csrfToken();
    }
    const response = await fetch(url, init);
    let data;
    try {
      data = await response.json();
    } catch (e) {
      data = { message: "HTTP " + response.status };
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  // ------------------------------------------------------------------ statistics
  function drawCharts() {
    const root = document.getElementById("stats-charts");
    const data = document.getElementById("stats-data");
    if (!root || !data || typeof Plotly === "undefined") return;
    for (const chart of JSON.parse(data.textContent)) {
      const div = el("div", null, "chart");
      div.dataset.chart = chart.id;
      root.appendChild(div);
      Plotly.newPlot(
        div,
        [{ type: "bar", x: chart.x, y: chart.y, marker: { color: "#4f46e5" } }],
        {
          title: { text: chart.title },
          margin: { t: 40, r: 10, l: 50, b: 60 },
          xaxis: { title: { text: chart.xtitle }, type: "category" },
          yaxis: { title: { text: "samples" }, rangemode: "tozero" },
        },
        { responsive: true, displaylogo: false }
      );
    }
  }

  // ------------------------------------------------------------------ preview
  const preview = document.getElementById("preview");
  if (!preview) {
    drawCharts();
    return;
  }
  const sourceId = preview.dataset.sourceId;
  const samplesBox = document.getElementById("preview-samples");
  const splitSelect = document.getElementById("preview-split");
  const prev = document.getElementById("preview-prev");
  const next = document.getElementById("preview-next");
  const range = document.getElementById("preview-range");
  const errorBox = document.getElementById("preview-error");
  let offset = 0;
  let count = 0;

  // Boxes are integers on a 0–1000 relative scale: x / 1000 · width is x / 10 percent of it.
  function boxOverlay(boxes, className) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "boxes " + className);
    for (const box of boxes) {
      const c = box.bbox_2d.map(Number);
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", c[0] / 10 + "%");
      rect.setAttribute("y", c[1] / 10 + "%");
      rect.setAttribute("width", Math.max(c[2] - c[0], 0) / 10 + "%");
      rect.setAttribute("height", Math.max(c[3] - c[1], 0) / 10 + "%");
      rect.dataset.label = String(box.label);
      const title = document.createElementNS(SVG, "title");
      title.textContent = box.label + " [" + c.join(", ") + "]";
      rect.appendChild(title);
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", c[0] / 10 + "%");
      label.setAttribute("y", c[1] / 10 + "%");
      label.setAttribute("dy", "-2");
      label.textContent = String(box.label);
      svg.append(rect, label);
    }
    return svg;
  }

  function formatValue(v) {
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? v.toFixed(1) : v.toFixed(4);
  }

  function scoreTable(body) {
    const table = el("table", null, "grid score");
    const thead = el("thead");
    const head = el("tr");
    head.append(el("th", "Component"), el("th", "Value"));
    thead.appendChild(head);
    const tbody = el("tbody");
    const addRow = function (key, value) {
      const tr = el("tr");
      tr.dataset.key = key;
      tr.append(el("td", key, "key"), el("td", formatValue(value), "value"));
      tbody.appendChild(tr);
    };
    const rewards = body.rewards || {};
    for (const key of Object.keys(rewards)) addRow(key, rewards[key]);
    if (typeof body.iou_threshold === "number") addRow("iou_threshold", body.iou_threshold);
    table.append(thead, tbody);
    return table;
  }

  function tryResponse(sample) {
    const box = el("div", null, "try");
    box.appendChild(el("h4", "Try a response"));
    const area = el("textarea");
    area.rows = 4;
    area.maxLength = 100000;
    area.setAttribute("aria-label", "Response to score for sample " + sample.index);
    area.placeholder = "Paste a model response to see every reward component";
    const score = el("button", "Score");
    score.type = "button";
    const fill = el("button", "Paste the ground truth");
    fill.type = "button";
    const result = el("div", null, "score-result");
    result.setAttribute("aria-live", "polite");
    fill.addEventListener("click", function () {
      area.value = sample.ground_truth || "";
    });
    score.addEventListener("click", async function () {
      score.disabled = true;
      result.replaceChildren(el("p", "Scoring…", "muted"));
      try {
        const url =
          "/api/v1/data-sources/" + sourceId + "/samples/" + encodeURIComponent(sample.split) + "/" +
          sample.index + "/score/";
        const answer = await api("POST", url, { response: area.value });
        result.replaceChildren();
        if (!answer.ok) {
          result.appendChild(el("div", answer.data.message || "HTTP " + answer.status, "msg error"));
          return;
        }
        if (answer.data.error) result.appendChild(el("div", "Verifier error: " + answer.data.error, "msg error"));
        result.appendChild(scoreTable(answer.data));
      } catch (err) {
        result.replaceChildren(el("div", "The server could not be reached: " + err, "msg error"));
      } finally {
        score.disabled = false;
      }
    });
    const buttons = el("p", null, "buttons");
    buttons.append(score, " ", fill);
    box.append(area, buttons, result);
    return box;
  }

  function promptText(prompt) {
    if (!Array.isArray(prompt)) return prompt == null ? "" : String(prompt);
    return prompt
      .map((m) => (m && typeof m === "object" ? (m.role || "?") + ": " + (m.content == null ? "" : m.content) : String(m)))
      .join("\n\n");
  }

  function sampleCard(sample) {
    const card = el("article", null, "card sample");
    card.dataset.index = sample.index;
    card.dataset.verifier = sample.verifier || "";
    card.appendChild(el("h3", "#" + sample.index + (sample.id ? " · " + sample.id : "")));
    const body = el("div", null, "sample-body");
    const figures = el("div", null, "figures");
    (sample.images || []).forEach(function (src, k) {
      const figure = el("div", null, "sample-image");
      const img = el("img");
      img.src = src;
      img.alt = "image " + (k + 1) + " of sample " + sample.index;
      figure.appendChild(img);
      // The ground-truth boxes refer to the first image.
      if (k === 0 && Array.isArray(sample.boxes) && sample.boxes.length) {
        figure.appendChild(boxOverlay(sample.boxes, "truth"));
      }
      figures.appendChild(figure);
    });
    const text = el("div", null, "sample-text");
    text.appendChild(el("h4", "Prompt"));
    text.appendChild(el("pre", promptText(sample.prompt), "prompt"));
    text.appendChild(el("h4", "Ground truth"));
    text.appendChild(el("pre", sample.ground_truth, "ground-truth"));
    if (sample.answer && sample.answer !== sample.ground_truth) {
      text.appendChild(el("h4", "Answer"));
      text.appendChild(el("pre", sample.answer, "answer"));
    }
    text.appendChild(el("p", (sample.ability || "") + " · verifier " + (sample.verifier || "?"), "muted"));
    text.appendChild(tryResponse(sample));
    body.append(figures, text);
    card.appendChild(body);
    return card;
  }

  async function load() {
    const split = splitSelect.value;
    prev.disabled = true;
    next.disabled = true;
    errorBox.hidden = true;
    const url =
      "/api/v1/data-sources/" + sourceId + "/samples/?split=" + encodeURIComponent(split) +
      "&offset=" + offset + "&limit=" + PAGE;
    let answer;
    try {
      answer = await api("GET", url);
    } catch (err) {
      answer = { ok: false, data: { message: "the server could not be reached: " + err } };
    }
    if (!answer.ok) {
      errorBox.textContent = answer.data.message || "the samples could not be loaded";
      errorBox.hidden = false;
      samplesBox.replaceChildren();
      range.textContent = "";
      return;
    }
    count = answer.data.count;
    const results = answer.data.results || [];
    samplesBox.replaceChildren(...results.map(sampleCard));
    range.textContent = results.length
      ? offset + 1 + "–" + (offset + results.length) + " of " + count
      : "no " + split + " sample";
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= count;
  }

  prev.addEventListener("click", function () {
    offset = Math.max(0, offset - PAGE);
    load();
  });
  next.addEventListener("click", function () {
    offset += PAGE;
    load();
  });
  splitSelect.addEventListener("change", function () {
    offset = 0;
    load();
  });

  load();
  drawCharts();
})();
