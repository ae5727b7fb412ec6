// Drives the generated client against a gateway serving wss:// with a
// self-signed certificate: the pinned certificate is accepted, a wrong
// pin is refused before anything is sent, and without a pin the
// platform's verification refuses the certificate.
// Usage: node tests/typescript/tls.mjs <wss-url> <token> <sha256-fingerprint>
import { ClawgateClient, ClawgateError } from "../../gen/typescript/client.js";
import WebSocket from "../../gen/tools/node_modules/ws/wrapper.mjs";
import assert from "node:assert/strict";

const [url, token, pin] = process.argv.slice(2);
const colons = (f) => f.replace(/:/g, "").toUpperCase().match(/../g).join(":");

// The right pin: the self-signed certificate is accepted.
const client = new ClawgateClient({ url, token, WebSocket, tlsFingerprint: pin, reconnect: false });
await client.connect();
const health = await client.health();
assert.equal(health.state, "ready");
client.close();
console.log("pinned ok");

// A wrong pin (its last hex digit flipped): refused, and nothing sent.
const wrong = pin.slice(0, -1) + (parseInt(pin.at(-1), 16) ^ 1).toString(16);
const sent = [];
class Spy extends WebSocket {
  send(data, ...rest) {
    sent.push(data);
    return super.send(data, ...rest);
  }
}
const refused = new ClawgateClient({ url, token, WebSocket: Spy, tlsFingerprint: wrong });
await assert.rejects(refused.connect(), (e) => {
  assert.ok(e instanceof ClawgateError);
  assert.equal(e.code, 0);
  assert.equal(e.message, `the gateway's TLS certificate is ${colons(pin)}, not the pinned ${colons(wrong)}`);
  return true;
});
assert.deepEqual(sent, []);
console.log("wrong pin refused");

// No pin: the usual verification refuses a self-signed certificate,
// with `ws` and with the built-in WebSocket where there is one.
for (const implementation of [WebSocket, globalThis.WebSocket].filter(Boolean)) {
  const unpinned = new ClawgateClient({ url, token, WebSocket: implementation, reconnect: false });
  await assert.rejects(unpinned.connect(), (e) => e instanceof ClawgateError && /cannot connect/.test(e.message));
}
console.log("unpinned refused");
