// The Control UI: health, channels, nodes, cron, exec approvals, events.
import { connectForm, el } from "/web/session.js";

const $ = (selector) => document.querySelector(selector);
let client = null;

function rows(table, header, list) {
  table.replaceChildren(el("tr", {}, ...header.map((h) => el("th", {}, h))));
  for (const cells of list) table.append(el("tr", {}, ...cells.map((c) => el("td", {}, c))));
}

async function refreshHealth() {
  const [health, status] = await Promise.all([client.health(), client.status()]);
  rows($("#health"), ["", ""], [
    ["state", health.state],
    ["uptime", `${Math.round(health.uptime)} s`],
    ["connections", `${status.connections.operator} operators, ${status.connections.node} nodes`],
    ["config", health.config.reloadOk ? "loaded" : `rejected: ${health.config.lastError ?? ""}`],
    ["cron", `${health.cron.jobs} jobs, ${health.cron.running} running`],
  ]);
}

async function refreshChannels() {
  const { channels } = await client.channelsStatus();
  rows($("#channels"), ["channel", "status", "in", "out", "dropped"],
    channels.map((c) => [`${c.channel}:${c.accountId}`, c.status, String(c.received), String(c.replied), String(c.dropped)]));
}

async function refreshNodes() {
  const { nodes } = await client.nodesList();
  rows($("#nodes"), ["node", "platform", "online"], nodes.map((n) => [n.name, n.platform, n.online ? "yes" : "no"]));
}

const when = (ms) => (ms ? new Date(ms).toLocaleString() : "—");

async function refreshCron() {
  const { jobs } = await client.cronList();
  const table = $("#cron");
  rows(table, ["job", "schedule", "next", "last", ""], []);
  for (const job of jobs) {
    const schedule = job.schedule.kind === "cron" ? job.schedule.expr : job.schedule.kind;
    const actions = el("span", {},
      el("button", { class: "secondary", "data-action": "run", onclick: () => act(() => client.cronRun({ id: job.id })) }, "Run now"),
      el("button", { class: "secondary", onclick: () => act(() => client.cronUpdate({ id: job.id, enabled: !job.enabled })) }, job.enabled ? "Disable" : "Enable"),
      el("button", { class: "secondary", onclick: () => showRuns(job.id) }, "History"),
      el("button", { class: "danger", onclick: () => act(() => client.cronRemove({ id: job.id })) }, "Remove"),
    );
    table.append(el("tr", { "data-job": job.name }, ...[job.name, schedule, when(job.state.nextRunAtMs), job.state.lastStatus ?? "—"].map((c) => el("td", {}, c)), el("td", {}, actions)));
  }
}

async function showRuns(id) {
  const { runs } = await client.cronRuns({ id, limit: 10 });
  $("#cron-runs").textContent = runs.map((r) => `${when(r.startedAtMs)}  ${r.status}  ${r.summary ?? r.error ?? ""}`).join("\n");
}

async function act(action) {
  $("#cron-error").textContent = "";
  try {
    await action();
  } catch (e) {
    $("#cron-error").textContent = e.message;
  }
  await refreshCron();
}

function showApproval(approval) {
  const box = $("#approvals");
  box.querySelector(".muted")?.remove();
  const answer = (decision) => async () => {
    try {
      await client.approvalsRespond({ id: approval.id, decision });
    } catch (e) {
      card.append(el("p", { class: "error" }, e.message));
    }
  };
  const card = el("div", { class: "approval", "data-approval": approval.id },
    el("strong", {}, `${approval.agentId} wants to run`),
    el("code", {}, approval.command),
    el("small", {}, `in ${approval.cwd ?? "?"}${approval.nodeId ? ` on ${approval.nodeId}` : ""}`),
    el("div", {},
      el("button", { onclick: answer("allow-once") }, "Allow once"),
      el("button", { class: "secondary", onclick: answer("allow-always") }, "Always allow"),
      el("button", { class: "danger", onclick: answer("deny") }, "Deny")));
  box.append(card);
}

function logEvent(data, seq, name) {
  const line = el("div", {}, `${seq} ${name} ${JSON.stringify(data).slice(0, 160)}`);
  const events = $("#events");
  events.prepend(line);
  while (events.childElementCount > 200) events.lastChild.remove();
}

async function refreshSessions() {
  const search = $("#sessions-search").value.trim();
  const { sessions } = await client.sessions({ limit: 50, ...(search ? { search } : {}) });
  const table = $("#sessions");
  rows(table, ["session", "messages", "last active", ""], []);
  for (const s of sessions) {
    const actions = el("span", {},
      el("button", { class: "secondary", "data-action": "open", onclick: () => openTranscript(s.key) }, "Open"),
      el("button", { class: "secondary", onclick: () => sessionAction(() => client.sessionsClear({ sessionKey: s.key })) }, "Clear"),
      el("button", { class: "danger", onclick: () => sessionAction(() => client.sessionsDelete({ sessionKey: s.key })) }, "Delete"));
    table.append(el("tr", { "data-session": s.key },
      ...[s.label ? `${s.label} (${s.key})` : s.key, String(s.messageCount), when(s.updatedAtMs)].map((c) => el("td", {}, c)),
      el("td", {}, actions)));
  }
}

async function openTranscript(sessionKey) {
  const { messages } = await client.sessionsHistory({ sessionKey, limit: 100 });
  $("#transcript").textContent = messages.map((m) => `${m.role}: ${m.content}`).join("\n");
}

async function sessionAction(action) {
  await action();
  $("#transcript").textContent = "";
  await refreshSessions();
}

let searchTimer = null;
$("#sessions-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refreshSessions, 250);
});

// The config editor: the file's text, validated by the gateway as it is
// typed (the same line-precise errors as `clawgate config validate`),
// saved whole with the hash it was read at.
let configHash = null;
let validateTimer = null;

async function loadConfig() {
  try {
    const file = await client.configFile();
    configHash = file.hash;
    $("#config-path").textContent = file.path;
    $("#config-text").value = file.text;
    $("#config-status").textContent = "";
    $("#config-errors").replaceChildren();
  } catch (e) {
    $("#config-section").classList.add("hidden");
  }
}

async function validateConfig() {
  const { ok, errors } = await client.configValidate({ text: $("#config-text").value });
  $("#config-errors").replaceChildren(
    ...errors.map((p) => el("li", {}, `line ${p.line ?? "?"}: ${p.path ? `${p.path}: ` : ""}${p.message}`)),
  );
  $("#config-status").textContent = ok ? "valid" : "";
  $("#config-save").disabled = !ok;
}

$("#config-text").addEventListener("input", () => {
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validateConfig, 250);
});

$("#config-save").addEventListener("click", async () => {
  try {
    const result = await client.configWrite({ text: $("#config-text").value, baseHash: configHash });
    configHash = result.hash;
    const live = result.changed.filter((k) => !result.restartRequired.includes(k));
    $("#config-status").textContent =
      `saved · applied live: ${live.join(", ") || "nothing"} · needs a restart: ${result.restartRequired.join(", ") || "nothing"}`;
  } catch (e) {
    $("#config-status").textContent = e.message;
  }
});

connectForm($("#connect form"), async (connected, hello) => {
  client = connected;
  $("#state").textContent = `open · ${hello.server.name} ${hello.server.version}`;
  client.onState((state) => ($("#state").textContent = state));
  client.on("*", logEvent);
  client.on("approvals.requested", showApproval);
  client.on("approvals.resolved", (e) => document.querySelector(`[data-approval="${e.id}"]`)?.remove());
  client.on("health.changed", refreshHealth);
  client.on("cron.finished", refreshCron);
  client.on("agent.message", (e) => e.state === "final" && refreshSessions());
  client.on("channel.connected", refreshChannels);
  client.on("channel.disconnected", refreshChannels);
  client.on("nodes.changed", refreshNodes);
  $("#connect").classList.add("hidden");
  $("#dashboard").classList.remove("hidden");
  const grants = new Set(hello.scopes);
  if (grants.has("operator.approvals") || grants.has("operator.admin")) {
    for (const approval of (await client.approvalsPending()).approvals) showApproval(approval);
  }
  await Promise.all([refreshHealth(), refreshChannels(), refreshNodes(), refreshCron(), loadConfig(), refreshSessions()]);
});

$("#cron-add").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target.elements;
  act(() => client.cronAdd({
    name: form.name.value || undefined,
    schedule: { kind: "cron", expr: form.expr.value },
    payload: { kind: "systemEvent", text: form.text.value || "ping" },
  }));
});
