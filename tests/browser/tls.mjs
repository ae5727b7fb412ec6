// The Control UI served over https:// by a gateway with a self-signed
// certificate, in Debian's headless Chromium: the browser trusts exactly
// that certificate (its public key's SHA-256, Chromium's own pinning
// flag), the page connects to wss:// on its own origin, and health shows.
import { chromium } from "playwright-core";

const [https, token, spki] = process.argv.slice(2);
const wssUrl = https.replace("https://", "wss://") + "/";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", `--ignore-certificate-errors-spki-list=${spki}`],
});
const fail = (why) => {
  throw new Error(why);
};
try {
  const ui = await browser.newPage();
  const response = await ui.goto(`${https}/ui`);
  if (response.headers()["strict-transport-security"]) fail("HSTS for a self-signed certificate");
  const url = await ui.inputValue("#connect [name=url]");
  if (url !== wssUrl) fail(`the URL defaults to ${url}, not ${wssUrl}`);
  await ui.fill("#connect [name=token]", token);
  await ui.click("#connect button[type=submit]");
  await ui.waitForSelector("#dashboard:not(.hidden)", { timeout: 10000 });
  await ui.waitForFunction(() => document.querySelector("#health")?.textContent.includes("ready"));
  console.log("OK");
} finally {
  await browser.close();
}
