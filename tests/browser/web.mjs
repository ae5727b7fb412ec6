// Drives Debian's headless Chromium through the Control UI and WebChat of
// a running gateway (started by tests/it/browser.rs). Screenshots go to
// the directory given last.
import { chromium } from "playwright-core";

const [http, token, shots] = process.argv.slice(2);
const wsUrl = http.replace("http://", "ws://") + "/";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const fail = (why) => {
  throw new Error(why);
};

async function connect(page, path) {
  await page.goto(`${http}${path}`);
  const url = await page.inputValue("#connect [name=url]");
  if (url !== wsUrl) fail(`the URL defaults to ${url}, not the page's origin`);
  await page.fill("#connect [name=token]", token);
  await page.click("#connect button[type=submit]");
}

// Control UI: connect, health.
const ui = await browser.newPage();
const violations = [];
ui.on("console", (m) => m.type() === "error" && violations.push(m.text()));
await connect(ui, "/ui");
await ui.waitForSelector("#dashboard:not(.hidden)");
await ui.waitForFunction(() => document.querySelector("#health")?.textContent.includes("ready"));
if (ui.url().includes(token)) fail("the token is in the URL");

// Cron: add a job and run it now.
await ui.fill("#cron-add [name=name]", "browser job");
await ui.fill("#cron-add [name=expr]", "0 8 * * 1-5");
await ui.fill("#cron-add [name=text]", "hello from cron");
await ui.click("#cron-add button");
await ui.waitForSelector('tr[data-job="browser job"]');
await ui.click('tr[data-job="browser job"] button[data-action=run]');
await ui.waitForFunction(() => document.querySelector('tr[data-job="browser job"]')?.textContent.includes("ok"));
await ui.screenshot({ path: `${shots}/control-ui.png`, fullPage: true });

// Config editor: an error shown at its line, then a valid save applied live.
const original = await ui.inputValue("#config-text");
const errorLine = original.split("\n").length + 1;
await ui.fill("#config-text", `${original}[cron]\nhistoryLimit = "many"\n`);
await ui.waitForSelector("#config-errors li");
const shown = await ui.textContent("#config-errors li");
if (!shown.startsWith(`line ${errorLine}: cron.historyLimit`)) fail(`the error reads ${shown}`);
await ui.screenshot({ path: `${shots}/config-error.png`, fullPage: true });
await ui.fill("#config-text", `${original}[cron]\nhistoryLimit = 50\n`);
await ui.waitForFunction(() => document.querySelector("#config-status").textContent === "valid");
await ui.click("#config-save");
await ui.waitForFunction(() => document.querySelector("#config-status").textContent.includes("applied live: cron.historyLimit"));

// WebChat: a message whose reply needs an exec approval, given in the UI.
const chat = await browser.newPage();
await connect(chat, "/chat");
await chat.waitForSelector("#chat:not(.hidden)");
await chat.fill("#send textarea", "run something for me");
await chat.click("#send-button");
await ui.waitForSelector(".approval");
const command = await ui.textContent(".approval code");
if (command !== "echo approved") fail(`the approval shows ${command}`);
await ui.screenshot({ path: `${shots}/approval.png`, fullPage: true });
await ui.click(".approval button");
await ui.waitForSelector(".approval", { state: "detached" });
await chat.waitForSelector(".message.assistant[data-done=final]");
const reply = await chat.textContent(".message.assistant[data-done=final] .text");
if (reply !== "All done.") fail(`the reply reads ${reply}`);
const tool = await chat.textContent(".message.assistant details.tool pre");
if (!tool.includes("approved")) fail(`the tool result reads ${tool}`);
await chat.screenshot({ path: `${shots}/chat.png`, fullPage: true });

// The session shows up in the Control UI with its transcript.
await ui.fill("#sessions-search", "main");
await ui.waitForSelector('tr[data-session="agent:main:main"]');
await ui.click('tr[data-session="agent:main:main"] button[data-action=open]');
await ui.waitForFunction(() => document.querySelector("#transcript").textContent.includes("user: run something for me"));

// History comes back on reload (the token is remembered for this tab only).
await chat.reload();
await chat.click("#connect button[type=submit]");
await chat.waitForSelector(".message.user");

// A page of another origin cannot open the gateway's WebSocket.
const stranger = await browser.newPage();
await stranger.goto("about:blank");
const outcome = await stranger.evaluate(
  (url) =>
    new Promise((resolve) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve("open");
      ws.onerror = () => resolve("refused");
    }),
  wsUrl,
);
if (outcome !== "refused") fail("a foreign origin opened the WebSocket");
if (violations.length) fail(`console errors: ${violations.join("; ")}`);
await browser.close();
console.log("OK");
