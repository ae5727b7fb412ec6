// WebChat: one session at a time, replies streamed from agent.* events.
import { connectForm, el } from "/web/session.js";

const $ = (selector) => document.querySelector(selector);
let client = null;
let sessionKey = "";
let live = null; // the assistant message being streamed: { runId, bubble, text, extras }

function bubble(role, text) {
  const node = el("div", { class: `message ${role}` });
  node.append(el("span", { class: "text" }, text));
  $("#messages").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

async function loadSessions(selected) {
  const { sessions } = await client.sessions({ limit: 100 });
  const select = $("#session");
  select.replaceChildren();
  const keys = sessions.map((s) => s.key);
  if (selected && !keys.includes(selected)) keys.unshift(selected);
  for (const key of keys) select.append(el("option", { value: key }, key));
  sessionKey = selected ?? keys[0] ?? "agent:main:main";
  if (!keys.length) select.append(el("option", { value: sessionKey }, sessionKey));
  select.value = sessionKey;
}

async function loadHistory() {
  $("#messages").replaceChildren();
  live = null;
  try {
    const { messages } = await client.sessionsHistory({ sessionKey, limit: 200 });
    for (const m of messages) bubble(m.role === "user" ? "user" : "assistant", m.content);
  } catch (e) {
    if (e.errorName !== "not_found") throw e;
  }
}

/** The bubble of run `runId`, started by its first event of any kind. */
function ensureLive(runId) {
  if (!live || live.runId !== runId) {
    live = { runId, node: bubble("assistant", ""), text: "" };
    $("#abort").classList.remove("hidden");
  }
  return live;
}

function onMessage(event) {
  if (event.sessionKey !== sessionKey) return;
  ensureLive(event.runId);
  if (event.state === "delta") {
    live.text += event.delta ?? "";
    live.node.querySelector(".text").textContent = live.text;
  } else {
    if (event.message) live.node.querySelector(".text").textContent = event.message.content;
    if (event.state === "error") live.node.append(el("p", { class: "error" }, event.error ?? "failed"));
    if (event.state === "aborted") live.node.append(el("p", { class: "error" }, "stopped"));
    live.node.dataset.done = event.state;
    $("#abort").classList.add("hidden");
  }
}

function onExtra(kind, event) {
  if (event.sessionKey !== sessionKey) return;
  ensureLive(event.runId);
  const summary = kind === "thinking" ? "thinking" : `tool ${event.name} (${event.phase})`;
  const body = kind === "thinking" ? event.delta : JSON.stringify(event.result ?? event.error ?? event.arguments, null, 2);
  live.node.append(el("details", { class: kind }, el("summary", {}, summary), el("pre", {}, body ?? "")));
}

connectForm($("#connect form"), async (connected) => {
  client = connected;
  client.onState((state) => ($("#state").textContent = state));
  $("#state").textContent = "open";
  client.on("agent.message", onMessage);
  client.on("agent.thinking", (e) => onExtra("thinking", e));
  client.on("agent.tool", (e) => onExtra("tool", e));
  client.onState((state) => {
    if (state === "open") loadHistory();
  });
  $("#connect").classList.add("hidden");
  $("#chat").classList.remove("hidden");
  await loadSessions();
  await loadHistory();
});

$("#session").addEventListener("change", async (event) => {
  sessionKey = event.target.value;
  await loadHistory();
});

$("#new-session").addEventListener("click", async () => {
  await loadSessions(`web:${crypto.randomUUID().slice(0, 8)}`);
  await loadHistory();
});

$("#send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const box = event.target.elements.message;
  const message = box.value.trim();
  if (!message || !client) return;
  box.value = "";
  bubble("user", message);
  try {
    await client.chat({ message, sessionKey });
  } catch (e) {
    bubble("assistant", `error: ${e.message}`).classList.add("error");
  }
});

$("#abort").addEventListener("click", () => {
  if (live) client.chatAbort({ runId: live.runId });
});
