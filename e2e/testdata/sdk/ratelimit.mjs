// Sets, reads and removes a workflow's rate limit with the published
// Conductor SDK's MetadataClient (e2e/ratelimit_sdk_test.go).
// Environment: CONDUCTOR_SERVER_URL, KEY_ID, KEY_SECRET (an admin key).
// Prints one JSON line per step; exits non-zero on any failed check.
import assert from "node:assert/strict";
import { MetadataClient, WorkflowExecutor, orkesConductorClient } from "@io-orkes/conductor-javascript";

const { CONDUCTOR_SERVER_URL: serverUrl, KEY_ID, KEY_SECRET } = process.env;
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
setTimeout(() => {
  console.error("ratelimit.mjs: timed out");
  process.exit(3);
}, 60_000).unref();

const client = await orkesConductorClient({ serverUrl, keyId: KEY_ID, keySecret: KEY_SECRET });
const metadata = new MetadataClient(client);
const name = "sdk_rl_flow";
await metadata.registerWorkflowDef(
  { name, version: 1, tasks: [{ name: "hold", taskReferenceName: "hold", type: "WAIT" }] },
  true,
);
const before = await metadata.getWorkflowRateLimit(name);
await metadata.setWorkflowRateLimit({ rateLimitKey: "${workflow.correlationId}", concurrentExecLimit: 1 }, name);
const set = await metadata.getWorkflowRateLimit(name);
out("set", { before: before ?? null, set });

const executor = new WorkflowExecutor(client);
const first = await executor.startWorkflow({ name, version: 1, correlationId: "c1" });
const second = await executor.startWorkflow({ name, version: 1, correlationId: "c1" });
const queued = await executor.getWorkflow(second, true);
out("start", { firstRunning: typeof first === "string", secondRateLimited: queued.rateLimited === true, secondTasks: queued.tasks.length });

await metadata.removeWorkflowRateLimit(name);
const after = await metadata.getWorkflowRateLimit(name);
await assert.rejects(metadata.setWorkflowRateLimit({ concurrentExecLimit: 1 }, "sdk_rl_unknown"));
out("remove", { after: after ?? null });
process.exit(0);
