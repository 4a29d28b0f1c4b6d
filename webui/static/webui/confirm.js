// A form with data-confirm asks before it is sent: the question is the attribute's text, written
// by the page (never user data).

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
