// What every module of the run page needs: element lookup and creation (text always set with
// textContent), and JSON requests with the page's session that fail with the API's message.

export function $(id) {
  return document.getElementById(id);
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// fetch() a JSON API path; resolves to the body, rejects with an Error carrying the status,
// the body and the API's message.
export async function requestJson(method, path) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method: method,
    headers: headers,
    credentials: "same-origin",
    body: method === "GET" ? undefined : "{}",
  });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const error = new Error((body && body.message) || method + " " + path + " answered " + response.status);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}
