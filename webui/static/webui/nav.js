// The project switcher of the top bar: choosing a project opens it.

const switcher = document.querySelector("form.switcher");
if (switcher) {
  const select = switcher.elements.p;
  switcher.addEventListener("submit", (event) => {
    event.preventDefault();
    if (/^\d+$/.test(select.value)) window.location.href = "/projects/" + select.value + "/";
  });
  select.addEventListener("change", () => switcher.requestSubmit());
}
