// The token shown once after it is made: a button copies it (the clipboard API, else a selection).

const field = document.getElementById("new-token");
const state = document.getElementById("copy-state");
const button = document.getElementById("copy-token");

function byHand() {
  field.focus();
  field.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (e) {
    ok = false;
  }
  state.textContent = ok ? "Copied." : "Press Ctrl+C (⌘C) to copy the selected token.";
}

if (field && state && button) {
  field.addEventListener("focus", () => field.select());
  button.addEventListener("click", () => {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(() => {
        state.textContent = "Copied.";
      }, byHand);
    } else {
      byHand();
    }
  });
}
