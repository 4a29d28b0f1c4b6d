// Launch form: filter the source table by task type and tag, show the mixture's shares as the
// weights change, refill the hyper-parameters from a newly chosen preset, and show what the
// chosen compute target offers. The server checks everything again on submit; every value
// from the page is shown with textContent.
(function () {
  "use strict";
  const form = document.getElementById("launch-form");
  if (!form) return;

  const rows = Array.from(document.querySelectorAll("#source-rows tr[data-source-id]"));
  const taskFilter = document.getElementById("filter-task");
  const tagFilter = document.getElementById("filter-tag");
  const filterCount = document.getElementById("filter-count");
  const mixture = document.getElementById("mixture");
  const presetSelect = document.getElementById("f-preset");
  const targetSelect = document.getElementById("f-compute_target");
  const targetOffers = document.getElementById("target-offers");
  const presetValues = JSON.parse(document.getElementById("preset-values").textContent);

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function rowParts(row) {
    return {
      box: row.querySelector("input[name=source]"),
      weight: row.querySelector("input.weight"),
      share: row.querySelector(".share"),
    };
  }

  function weightOf(row) {
    const value = Number(rowParts(row).weight.value);
    return Number.isFinite(value) && value > 0 ? value : 0;
  }

  // Shares among the checked sources: weight / sum of weights, as the trainer draws them.
  function showShares() {
    const checked = rows.filter((row) => rowParts(row).box.checked);
    const total = checked.reduce((sum, row) => sum + weightOf(row), 0);
    const items = [];
    rows.forEach(function (row) {
      const parts = rowParts(row);
      const weight = weightOf(row);
      if (parts.box.checked && total > 0 && weight > 0) {
        const share = ((100 * weight) / total).toFixed(1) + " %";
        parts.share.textContent = share;
        items.push(el("span", row.dataset.name + " " + share, "mix"));
      } else {
        parts.share.textContent = parts.box.checked ? "weight > 0 needed" : "";
      }
      row.classList.toggle("chosen", parts.box.checked);
    });
    if (!items.length) items.push(el("span", "no source checked", "muted"));
    mixture.replaceChildren(...items);
  }

  function tagsOf(row) {
    return Array.from(row.querySelectorAll("[data-tag]")).map((node) => node.dataset.tag);
  }

  // Hidden rows keep their check and weight: the filter helps to find sources, it does not unselect them.
  function applyFilter() {
    const task = taskFilter.value;
    const tag = tagFilter.value;
    let shown = 0;
    let hiddenChecked = 0;
    rows.forEach(function (row) {
      const visible = (!task || row.dataset.task === task) && (!tag || tagsOf(row).includes(tag));
      row.hidden = !visible;
      if (visible) shown += 1;
      else if (rowParts(row).box.checked) hiddenChecked += 1;
    });
    let text = shown + " of " + rows.length + " sources shown";
    if (hiddenChecked) text += "; " + hiddenChecked + " checked source(s) hidden by the filter";
    filterCount.textContent = task || tag ? text : "";
  }

  rows.forEach(function (row) {
    const parts = rowParts(row);
    parts.box.addEventListener("change", showShares);
    parts.weight.addEventListener("input", function () {
      // Giving a source a weight means using it.
      if (parts.weight.value !== "") parts.box.checked = true;
      showShares();
    });
  });
  taskFilter.addEventListener("change", applyFilter);
  tagFilter.addEventListener("change", applyFilter);

  // A field still showing the previous preset's value takes the new preset's; an edited one is kept.
  let preset = presetSelect.value;
  presetSelect.addEventListener("change", function () {
    const before = presetValues[preset] || {};
    const after = presetValues[presetSelect.value] || {};
    Object.keys(after).forEach(function (name) {
      const input = form.elements[name];
      if (input && (input.value === "" || input.value === before[name])) input.value = after[name];
    });
    preset = presetSelect.value;
  });

  function showOffers() {
    const option = targetSelect.selectedOptions[0];
    if (!option) return;
    const parts = [];
    if (option.dataset.cpu !== "") parts.push(option.dataset.cpu + " CPU");
    if (option.dataset.gpu !== "") parts.push(option.dataset.gpu + " GPU");
    targetOffers.textContent = parts.length ? "Offers " + parts.join(" and ") + "." : "Its resources are not declared.";
  }
  targetSelect.addEventListener("change", showOffers);

  // One submission at a time; a page restored from the back-forward cache can submit again.
  const submit = document.getElementById("launch-submit");
  form.addEventListener("submit", function () {
    submit.disabled = true;
  });
  window.addEventListener("pageshow", function () {
    submit.disabled = false;
  });

  showShares();
  applyFilter();
  showOffers();
})();
