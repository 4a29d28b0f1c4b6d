// Upload page: each file goes through the resumable chunked API (POST /api/v1/uploads/, then
// PUT chunks with Content-Range), then one POST /api/v1/datasets/ commits them as a version.
// A failed chunk is retried from the offset the server says it holds, so nothing is sent twice
// and nothing is skipped. Every value from the user or the server is shown with textContent.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;

  const MAX_RETRIES = 6;
  const SHOWN_ERROR_ROWS = 50;
  const projectId = Number(form.dataset.projectId);
  const progressSection = document.getElementById("upload-progress");
  const fileRows = document.getElementById("upload-file-rows");
  const overallBar = document.getElementById("overall-progress");
  const overallPercent = document.getElementById("overall-percent");
  const statusLine = document.getElementById("upload-status");
  const resultBox = document.getElementById("upload-result");
  const submit = document.getElementById("upload-submit");

  class UploadError extends Error {}

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // One API call; resolves to {ok, status, data} (data: parsed JSON or {message}), rejects on network failure.
  async function api(method, url, body, headers) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: Object.assign({ "X-CSRFToken": csrfToken(), Accept: "application/json" }, headers || {}),
    };
    if (body !== undefined) init.body = body;
    const response = await fetch(url, init);
    const text = await response.text();
    let data;
    try {
      data = text ? JSON.parse(text) : {};
    } catch (e) {
      data = { message: "HTTP " + response.status + ": " + text.slice(0, 200) };
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  function messageOf(result) {
    const data = result.data || {};
    let text = typeof data.message === "string" ? data.message : "HTTP " + result.status;
    const fields = data.extra && data.extra.fields;
    if (fields && typeof fields === "object") {
      const parts = Object.keys(fields).map((k) => k + ": " + [].concat(fields[k]).join(" "));
      if (parts.length && text.indexOf(parts[0]) === -1) text += " (" + parts.join("; ") + ")";
    }
    return text;
  }

  function delay(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function formatBytes(n) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function percent(done, total) {
    return total > 0 ? Math.floor((100 * done) / total) : 100;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  // Progress rows, one per file; returns setters used while uploading.
  function progressRows(files) {
    fileRows.replaceChildren();
    return files.map(function (file) {
      const tr = el("tr");
      tr.dataset.file = file.name;
      const bar = el("progress");
      bar.max = Math.max(file.size, 1);
      bar.value = 0;
      const pct = el("span", "0 %", "percent");
      const state = el("td", "waiting", "state");
      const cell = el("td");
      cell.append(bar, " ", pct);
      tr.append(el("td", file.name), el("td", formatBytes(file.size)), cell, state);
      fileRows.appendChild(tr);
      return {
        progress: function (done) {
          bar.value = done;
          pct.textContent = percent(done, file.size) + " %";
        },
        state: function (text) {
          state.textContent = text;
        },
      };
    });
  }

  function chunkBytes() {
    // Read at each chunk, so a test may shrink it to exercise several chunks on small files.
    const n = Number(form.dataset.chunkBytes);
    return Number.isFinite(n) && n >= 1 ? Math.floor(n) : 8 * 1024 * 1024;
  }

  // Upload one file; returns its upload id. onProgress(bytesTheServerHolds).
  async function uploadFile(file, row, onProgress) {
    const created = await api(
      "POST",
      "/api/v1/uploads/",
      JSON.stringify({ project: projectId, filename: file.name, size: file.size }),
      { "Content-Type": "application/json" }
    );
    if (!created.ok) throw new UploadError(file.name + ": " + messageOf(created));
    const id = created.data.id;
    const url = "/api/v1/uploads/" + encodeURIComponent(id) + "/";
    let offset = created.data.received;
    let failures = 0;
    row.state("uploading");
    while (offset < file.size) {
      const end = Math.min(offset + chunkBytes(), file.size);
      let result = null;
      try {
        result = await api("PUT", url, file.slice(offset, end), {
          "Content-Type": "application/octet-stream",
          "Content-Range": "bytes " + offset + "-" + (end - 1) + "/" + file.size,
        });
      } catch (networkError) {
        result = null;
      }
      if (result && result.ok) {
        offset = result.data.received;
        failures = 0;
        onProgress(offset);
        continue;
      }
      // 409: the server holds a different number of bytes than we assumed; ask it and resume there.
      const retriable = result === null || result.status === 409 || result.status === 429 || result.status >= 500;
      if (!retriable) throw new UploadError(file.name + ": " + messageOf(result));
      failures += 1;
      if (failures > MAX_RETRIES) {
        throw new UploadError(
          file.name + ": the upload failed " + failures + " times in a row at byte " + offset + "; try again later"
        );
      }
      row.state("retrying (" + failures + ")");
      await delay(Math.min(250 * 2 ** (failures - 1), 4000));
      try {
        const state = await api("GET", url);
        if (state.ok) {
          offset = state.data.received;
          onProgress(offset);
        }
      } catch (networkError) {
        // keep the offset; the next attempt asks again
      }
      row.state("uploading");
    }
    row.state("uploaded");
    return id;
  }

  function discard(ids) {
    // Best effort: chunked uploads that will not become a version are removed from staging.
    for (const id of ids) {
      api("DELETE", "/api/v1/uploads/" + encodeURIComponent(id) + "/").catch(function () {});
    }
  }

  function table(headers, rows, className) {
    const t = el("table", null, "grid " + (className || ""));
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", h)));
    const thead = el("thead");
    thead.appendChild(head);
    const tbody = el("tbody");
    rows.forEach(function (cells) {
      const tr = el("tr");
      cells.forEach((c) => tr.appendChild(el("td", c)));
      tbody.appendChild(tr);
    });
    t.append(thead, tbody);
    return t;
  }

  function link(href, text) {
    const a = el("a", text);
    a.href = href;
    return a;
  }

  function showVersion(body, name) {
    const version = body.version || {};
    const report = body.report || {};
    const box = el("div", null, "card result " + (body.created ? "created" : "existing"));
    box.dataset.versionId = version.id;
    const title = body.created
      ? "Created version " + version.number + " of dataset " + name
      : "Existing version " + version.number + " of dataset " + name + ": the same bytes were uploaded before";
    box.appendChild(el("h2", title));
    box.appendChild(
      el(
        "p",
        version.sample_count + " samples · " + formatBytes(version.size_bytes || 0) + " · content hash " +
          String(version.content_hash || "").slice(0, 12)
      )
    );
    if (report.invalid_rows) {
      const note = el("p", report.invalid_rows + " invalid rows were left out (policy keep_valid). ", "msg");
      if (typeof report.errors_csv === "string" && /^[0-9a-f]{32}$/.test(report.errors_csv)) {
        const a = link(
          "/api/v1/projects/" + projectId + "/upload-reports/" + report.errors_csv + "/",
          "Download their errors as CSV"
        );
        a.className = "errors-csv";
        note.appendChild(a);
      }
      box.appendChild(note);
    }
    const sources = report.sources || {};
    const rows = Object.keys(sources).map(function (sourceName) {
      const s = sources[sourceName] || {};
      const counts = s.counts || {};
      return [sourceName, s.task_type || "", s.verifier || "", counts.train || 0, counts.test || 0];
    });
    box.appendChild(table(["Source", "Task", "Verifier", "Train", "Test"], rows, "result-sources"));
    const links = el("p");
    links.append(link(form.dataset.datasetsUrl, "Datasets"), " · ", link(form.dataset.sourcesUrl, "Data sources"));
    box.appendChild(links);
    resultBox.replaceChildren(box);
  }

  function showError(message, body) {
    const box = el("div", null, "card result failed");
    box.appendChild(el("div", message, "msg error upload-error"));
    box.firstChild.setAttribute("role", "alert");
    const rows = (body && body.extra && Array.isArray(body.extra.rows) && body.extra.rows) || [];
    if (rows.length) {
      const report = body.extra.report || {};
      const total = report.error_count || rows.length;
      const shown = rows.slice(0, SHOWN_ERROR_ROWS);
      box.appendChild(el("p", "First " + shown.length + " of " + total + " row errors:"));
      box.appendChild(
        table(
          ["File", "Row", "Field", "Message"],
          shown.map((r) => [r.file, r.row, r.field, r.message]),
          "row-errors"
        )
      );
    }
    const reportId = body && body.extra && body.extra.report && body.extra.report.errors_csv;
    if (typeof reportId === "string" && /^[0-9a-f]{32}$/.test(reportId)) {
      const p = el("p");
      const a = link(
        "/api/v1/projects/" + projectId + "/upload-reports/" + reportId + "/",
        "Download every row error as CSV"
      );
      a.className = "errors-csv";
      p.appendChild(a);
      box.appendChild(p);
    }
    resultBox.replaceChildren(box);
  }

  function readForm(files) {
    const name = form.elements.name.value.trim();
    const fraction = Number(form.elements.test_fraction.value);
    const maxBytes = Number(form.dataset.maxBytes);
    if (!files.length) return "choose at least one file";
    if (!name) return "give the dataset a name";
    if (!(fraction >= 0 && fraction <= 0.99)) return "the test fraction must be between 0 and 0.99";
    const names = new Set();
    for (const f of files) {
      if (f.size === 0) return f.name + " is empty";
      if (f.size > maxBytes) return f.name + " is " + formatBytes(f.size) + "; the limit is " + formatBytes(maxBytes);
      if (names.has(f.name)) return "two files are named " + f.name;
      names.add(f.name);
    }
    return null;
  }

  async function run(files) {
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const done = files.map(() => 0);
    const rows = progressRows(files);
    progressSection.hidden = false;
    const showOverall = function () {
      const sum = done.reduce((a, b) => a + b, 0);
      overallBar.max = Math.max(total, 1);
      overallBar.value = sum;
      overallPercent.textContent = percent(sum, total) + " %";
    };
    showOverall();
    const ids = [];
    try {
      for (let i = 0; i < files.length; i++) {
        statusLine.textContent = "Uploading " + files[i].name + " (" + (i + 1) + " of " + files.length + ")…";
        const id = await uploadFile(files[i], rows[i], function (bytes) {
          done[i] = bytes;
          rows[i].progress(bytes);
          showOverall();
        });
        ids.push(id);
      }
    } catch (err) {
      discard(ids);
      const message = err instanceof UploadError ? err.message : "the upload failed: " + err;
      statusLine.textContent = "Upload failed.";
      showError(message, null);
      return;
    }
    statusLine.textContent = "Validating " + files.length + " file(s)…";
    const name = form.elements.name.value.trim();
    const payload = {
      project: projectId,
      name: name,
      description: form.elements.description.value,
      policy: form.elements.policy.value,
      test_fraction: Number(form.elements.test_fraction.value),
      uploads: ids,
    };
    let result;
    try {
      result = await api("POST", "/api/v1/datasets/", JSON.stringify(payload), {
        "Content-Type": "application/json",
      });
    } catch (err) {
      statusLine.textContent = "Validation failed.";
      showError("the server could not be reached: " + err, null);
      return;
    }
    if (result.ok) {
      statusLine.textContent = result.data.created ? "Done: a new version." : "Done: these bytes were uploaded before.";
      showVersion(result.data, name);
    } else {
      discard(ids);
      statusLine.textContent = "Refused.";
      showError(messageOf(result), result.data);
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const files = Array.from(document.getElementById("upload-files").files);
    const problem = readForm(files);
    if (problem) {
      showError(problem, null);
      return;
    }
    resultBox.replaceChildren();
    submit.disabled = true;
    try {
      await run(files);
    } finally {
      submit.disabled = false;
    }
  });
})();
