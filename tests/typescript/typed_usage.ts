// Type-checked with `tsc --strict` by tests/it/sdk.rs: the generated
// client's methods, params, results and events are typed.
import {
  ClawgateClient,
  ClawgateError,
  type CronJob,
  type HealthSnapshot,
} from "../../gen/typescript/client.js";

export async function usage(): Promise<string> {
  const client = new ClawgateClient({ url: "ws://127.0.0.1:18789", token: "t" });
  const hello = await client.connect();
  const version: number = hello.protocol;
  const health: HealthSnapshot = await client.health();
  const job: CronJob = await client.cronAdd({
    schedule: { kind: "every", everyMs: 1000 },
    payload: { kind: "systemEvent", text: "x" },
  });
  client.on("cron.finished", (event, seq) => {
    const status: "running" | "ok" | "error" | "skipped" = event.run.status;
    return [status, seq];
  });
  const result = await client.call("sessions.history", { sessionKey: "s" });
  const first: string | undefined = result.messages[0]?.content;
  try {
    // @ts-expect-error: chat takes message, not text
    await client.chat({ text: "wrong field" });
  } catch (e) {
    if (e instanceof ClawgateError) return e.errorName;
  }
  // @ts-expect-error: no such method
  await client.call("no.such.method", {});
  return `${version} ${health.state} ${job.id} ${first}`;
}
