// The generated client against a gateway that requires a client
// certificate (gateway.tls.caPath): with one, pinned, health answers;
// without, the handshake is refused.
// Usage: node tests/typescript/mtls.mjs <wss-url> <token> <fingerprint> <cert.pem> <key.pem>
import { ClawgateClient } from "../../gen/typescript/client.js";
import WebSocket from "../../gen/tools/node_modules/ws/wrapper.mjs";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const [url, token, pin, certPath, keyPath] = process.argv.slice(2);
const tlsClientCertificate = { cert: readFileSync(certPath), key: readFileSync(keyPath) };
const options = { url, token, WebSocket, tlsFingerprint: pin, reconnect: false };

const client = new ClawgateClient({ ...options, tlsClientCertificate });
await client.connect();
assert.equal((await client.health()).state, "ready");
client.close();

await assert.rejects(new ClawgateClient(options).connect());
console.log("OK");
