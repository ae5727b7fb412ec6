// Drives the generated client against a live gateway (started by
// tests/it/sdk.rs): handshake, typed calls, a typed error, events in
// order, and a reconnect after the gateway restarts.
import { ClawgateClient, ClawgateError } from "../../gen/typescript/client.js";
import assert from "node:assert/strict";

const [url, token] = process.argv.slice(2);
const client = new ClawgateClient({ url, token, backoffInitialMs: 100, backoffMaxMs: 500 });
const states = [];
client.onState((state) => states.push(state));
const hello = await client.connect();
assert.equal(hello.protocol, 1);
assert.ok(hello.methods.includes("cron.add"));

const health = await client.health();
assert.equal(health.state, "ready");

const seen = [];
client.on("agent.message", (event, seq) => seen.push({ seq, state: event.state, runSeq: event.runSeq }));
const reply = await client.chat({ message: "one two three", sessionKey: "sdk-ts" });
assert.equal(reply.message.content, "one two three");
await new Promise((r) => setTimeout(r, 100));
assert.ok(seen.length >= 2, JSON.stringify(seen));
for (let i = 1; i < seen.length; i++) {
  assert.ok(seen[i].seq > seen[i - 1].seq, "events arrive in order");
  assert.equal(seen[i].runSeq, seen[i - 1].runSeq + 1);
}
assert.equal(seen.at(-1).state, "final");

const history = await client.sessionsHistory({ sessionKey: "sdk-ts" });
assert.equal(history.messages.length, 2);

await assert.rejects(client.sessionsHistory({ sessionKey: "no-such-session" }), (e) => {
  assert.ok(e instanceof ClawgateError);
  assert.equal(e.errorName, "not_found");
  assert.equal(e.code, -32008);
  return true;
});
await assert.rejects(client.call("status", { bogus: 1 }), (e) => e.errorName === "invalid_params");

// The gateway restarts; the client reconnects by itself.
console.log("READY_FOR_RESTART");
const reopened = new Promise((resolve) => client.onState((s) => s === "open" && resolve()));
await reopened;
const again = await client.health();
assert.equal(again.state, "ready");
assert.ok(states.includes("reconnecting"), states.join(","));
client.close();
console.log("OK");
