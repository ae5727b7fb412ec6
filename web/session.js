// Connecting from a page: the URL defaults to this page's own origin; the
// credential is typed in and kept only in sessionStorage (never in a URL).
import { ClawgateClient } from "/web/client.js";

const KEY = "clawgate.connection";

export function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/`;
}

export function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) ?? "null");
  } catch {
    return null;
  }
}

/** Wires a connect form; calls onConnected(client, hello) once connected. */
export function connectForm(form, onConnected) {
  const url = form.querySelector("[name=url]");
  const token = form.querySelector("[name=token]");
  const error = form.querySelector(".error");
  const previous = saved();
  url.value = previous?.url ?? defaultUrl();
  token.value = previous?.token ?? "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const client = new ClawgateClient({ url: url.value, token: token.value || undefined, clientName: "clawgate-web" });
    try {
      const hello = await client.connect();
      sessionStorage.setItem(KEY, JSON.stringify({ url: url.value, token: token.value }));
      onConnected(client, hello);
    } catch (e) {
      error.textContent = e.message;
    }
  });
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}
