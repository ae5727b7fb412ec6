// Drives OpenClaw's reference client (@openclaw/gateway-client) against a
// gateway for tests/it/openclaw_v4.rs, printing one JSON line per thing it
// sees: hello, result, event, close, error, done.
//
//   node client.mjs <url> <token> [--calls m1,m2] [--events e1,e2]
//                   [--hellos N] [--key FILE] [--timeout MS] [--chat TEXT]
//
// With --key the device identity (an Ed25519 key) is kept in FILE and
// reused, and the device tokens the gateway issues in FILE.tokens;
// without it a fresh identity is made. A token of "-" means no shared
// token: the client then connects with its stored device token. After each hello it calls every
// method in --calls (and with --chat, chat.send of TEXT to agent:main:main),
// and it ends once it has seen --hellos hellos, every call's answer and
// every event named in --events (or at --timeout, exit 2).
import { GatewayClient } from "@openclaw/gateway-client";
import crypto from "node:crypto";
import fs from "node:fs";

const [url, tokenArg, ...rest] = process.argv.slice(2);
const token = tokenArg === "-" ? undefined : tokenArg;
const opt = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const list = (name) => (opt(name, "") || "").split(",").filter(Boolean);
const calls = list("calls");
const wantedEvents = new Set(list("events"));
const hellosWanted = Number(opt("hellos", "1"));
const keyFile = opt("key");
const chat = opt("chat");
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

function identity() {
  if (keyFile && fs.existsSync(keyFile)) return JSON.parse(fs.readFileSync(keyFile, "utf8"));
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
  const raw = publicKey.export({ type: "spki", format: "der" }).subarray(-32);
  const id = {
    deviceId: crypto.createHash("sha256").update(raw).digest("hex"),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }),
    raw: raw.toString("base64url"),
  };
  if (keyFile) fs.writeFileSync(keyFile, JSON.stringify(id), { mode: 0o600 });
  return id;
}

const device = identity();
const tokensFile = keyFile ? `${keyFile}.tokens` : undefined;
const storedTokens = () => (tokensFile && fs.existsSync(tokensFile) ? JSON.parse(fs.readFileSync(tokensFile, "utf8")) : {});
let hellos = 0;
let answered = 0;
const seen = new Set();
const finish = (code) => {
  print({ kind: "done", hellos, answered, events: [...seen] });
  client.stop();
  process.exit(code);
};
const maybeDone = () => {
  const eventsSeen = [...wantedEvents].every((e) => seen.has(e));
  if (hellos >= hellosWanted && answered >= calls.length * hellosWanted && eventsSeen) finish(0);
};

const client = new GatewayClient({
  url,
  token,
  clientName: "gateway-client",
  mode: "backend",
  clientVersion: "2026.9.1",
  scopes: ["operator.read", "operator.write"],
  deviceIdentity: { deviceId: device.deviceId, publicKeyPem: device.publicKeyPem, privateKeyPem: device.privateKeyPem },
  hostDeps: {
    signDevicePayload: (pem, payload) =>
      crypto.sign(null, Buffer.from(payload), crypto.createPrivateKey(pem)).toString("base64url"),
    publicKeyRawBase64UrlFromPem: () => device.raw,
    loadDeviceAuthToken: ({ role }) => storedTokens()[role] ?? null,
    storeDeviceAuthToken: ({ role, token, scopes }) => {
      if (tokensFile) fs.writeFileSync(tokensFile, JSON.stringify({ ...storedTokens(), [role]: { token, scopes } }), { mode: 0o600 });
    },
  },
  onHelloOk: async (hello) => {
    hellos += 1;
    print({ kind: "hello", protocol: hello.protocol, methods: hello.features.methods, events: hello.features.events,
            scopes: hello.auth.scopes, role: hello.auth.role, tickIntervalMs: hello.policy.tickIntervalMs,
            presence: hello.snapshot.presence.length, connId: hello.server.connId,
            deviceToken: Boolean(hello.auth.deviceToken) });
    for (const method of calls) {
      try {
        print({ kind: "result", method, ok: true, payload: await client.request(method, {}) });
      } catch (e) {
        print({ kind: "result", method, ok: false, code: e.gatewayCode ?? e.code, message: e.message, details: e.details });
      }
      answered += 1;
    }
    if (chat) {
      const sent = await client.request("chat.send", { sessionKey: "agent:main:main", message: chat, idempotencyKey: crypto.randomUUID() });
      print({ kind: "result", method: "chat.send", ok: true, payload: sent });
    }
    maybeDone();
  },
  onEvent: (evt) => {
    if (evt.event === "connect.challenge") return;
    seen.add(evt.event);
    print({ kind: "event", event: evt.event, seq: evt.seq, stateVersion: evt.stateVersion, payload: evt.payload });
    maybeDone();
  },
  onConnectError: (e) => print({ kind: "error", message: e.message, code: e.gatewayCode ?? e.code, details: e.details }),
  onClose: (code, reason) => print({ kind: "close", code, reason }),
  onGap: (gap) => print({ kind: "gap", ...gap }),
});
print({ kind: "device", deviceId: device.deviceId });
client.start();
setTimeout(() => finish(2), Number(opt("timeout", "15000")));
