// The alert rule form shows only the fields its kind reads: each field's box names those kinds in
// data-kinds (none: every kind). A hidden field is still sent, so its value is there when the kind
// changes back after the server refused the form; the server judges only the fields of the chosen
// kind. The condition list offers the kind's conditions.

const form = document.getElementById("rule-form");
const kind = form.elements.namedItem("kind");
const condition = form.elements.namedItem("condition");
const conditions = JSON.parse(document.getElementById("kind-conditions").textContent);

function show() {
  const chosen = kind.value;
  for (const box of form.querySelectorAll("[data-kinds]")) {
    const kinds = box.dataset.kinds.split(" ").filter(Boolean);
    box.hidden = kinds.length > 0 && !kinds.includes(chosen);
  }
  const allowed = (conditions[chosen] || "").split(" ").filter(Boolean);
  if (!allowed.length) return;
  for (const option of condition.options) {
    option.hidden = !allowed.includes(option.value);
    option.disabled = option.hidden;
  }
  if (!allowed.includes(condition.value)) condition.value = allowed[0];
}

kind.addEventListener("change", show);
show();
