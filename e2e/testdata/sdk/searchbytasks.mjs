// Finds workflows by their tasks with the published Conductor SDK's
// workflowResource.searchWorkflowsByTasks and searchWorkflowsByTasksV2
// (GET /api/workflow/search-by-tasks[-v2], Conductor's "which workflows
// ran this task" search), as the admin and as an application that may
// read one of the two definitions (e2e/search_sdk_test.go).
// Environment: CONDUCTOR_SERVER_URL, KEY_ID, KEY_SECRET (an admin key).
// Prints one JSON line per step; exits non-zero on any failed check.
import assert from "node:assert/strict";
import {
  ApplicationClient,
  AuthorizationClient,
  MetadataClient,
  WorkflowExecutor,
  orkesConductorClient,
  simpleTask,
} from "@io-orkes/conductor-javascript";

const { CONDUCTOR_SERVER_URL: serverUrl, KEY_ID, KEY_SECRET } = process.env;
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
setTimeout(() => {
  console.error("searchbytasks.mjs: timed out");
  process.exit(3);
}, 60_000).unref();
const quiet = { info() {}, debug() {}, warn() {}, error() {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(what, fn, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) {
        throw new Error(`${what}: ${e?.message ?? e}`);
      }
    }
    await sleep(50);
  }
}

const admin = await orkesConductorClient({ serverUrl, keyId: KEY_ID, keySecret: KEY_SECRET, logger: quiet });
const metadata = new MetadataClient(admin);
const executor = new WorkflowExecutor(admin);
await metadata.registerTasks([
  { name: "sdk_sbt_step", retryCount: 0, responseTimeoutSeconds: 30 },
  { name: "sdk_sbt_other", retryCount: 0, responseTimeoutSeconds: 30 },
]);
// Two tasks of the searched type in each run of sdk_sbt_flow: a workflow
// is found once however many of its tasks match.
await metadata.registerWorkflowDef({
  name: "sdk_sbt_flow",
  version: 1,
  tasks: [{
    name: "fork", taskReferenceName: "fork", type: "FORK_JOIN",
    forkTasks: [[simpleTask("left", "sdk_sbt_step", {})], [simpleTask("right", "sdk_sbt_step", {})]],
  }, { name: "join", taskReferenceName: "join", type: "JOIN", joinOn: ["left", "right"] }],
}, true);
await metadata.registerWorkflowDef({ name: "sdk_sbt_else", version: 1, tasks: [simpleTask("else", "sdk_sbt_other", {})] }, true);
const flows = [
  await executor.startWorkflow({ name: "sdk_sbt_flow", input: { n: 1 }, correlationId: "sbt-1" }),
  await executor.startWorkflow({ name: "sdk_sbt_flow", input: { n: 2 }, correlationId: "sbt-2" }),
];
const other = await executor.startWorkflow({ name: "sdk_sbt_else", input: { n: 3 } });
// The task search finds the five tasks once they are indexed.
await eventually("tasks not indexed", async () => {
  const tasks = await admin.taskResource.search(0, 10, undefined, "*", "taskType IN (sdk_sbt_step, sdk_sbt_other)");
  assert.equal(tasks.totalHits, 5);
});

// The SDK's legacy resources warn on stderr; the Go test reads stdout.
const byTasks = (client, query, v2 = false) => v2
  ? client.workflowResource.searchWorkflowsByTasksV2(0, 10, "workflowId:ASC", "*", query)
  : client.workflowResource.searchWorkflowsByTasks(0, 10, "workflowId:ASC", "*", query);
const found = await byTasks(admin, "taskType = sdk_sbt_step");
const foundV2 = await byTasks(admin, "taskType = sdk_sbt_step", true);
const otherTask = (await executor.getWorkflow(other, true)).tasks[0].taskId;
const byTaskId = await byTasks(admin, `taskId = ${otherTask}`);
out("admin", {
  flows,
  other,
  found: found.results.map((s) => [s.workflowId, s.workflowType, s.correlationId, s.status, s.input]),
  totalHits: found.totalHits,
  foundV2: foundV2.results.map((w) => [w.workflowId, w.workflowName, w.input]),
  totalHitsV2: foundV2.totalHits,
  byTaskId: byTaskId.results.map((s) => s.workflowId),
  none: (await byTasks(admin, "taskType = sdk_sbt_nothing")).results.length,
});

// An application sees the workflows whose definition it may read, and
// only those, however many tasks the query matches.
const apps = new ApplicationClient(admin);
const app = await apps.createApplication("sdk-sbt-reader");
const key = await apps.createAccessKey(app.id);
const reader = await orkesConductorClient({ serverUrl, keyId: key.id, keySecret: key.secret, logger: quiet });
const unseen = await byTasks(reader, "taskType IN (sdk_sbt_step, sdk_sbt_other)");
await new AuthorizationClient(admin).grantPermissions({
  subject: { type: "USER", id: `app:${app.id}` },
  target: { type: "WORKFLOW_DEF", id: "sdk_sbt_else" },
  access: ["READ"],
});
const seen = await byTasks(reader, "taskType IN (sdk_sbt_step, sdk_sbt_other)");
const seenV2 = await byTasks(reader, "taskType IN (sdk_sbt_step, sdk_sbt_other)", true);
out("reader", {
  unseen: unseen.results.length,
  unseenHits: unseen.totalHits,
  seen: seen.results.map((s) => s.workflowId),
  seenHits: seen.totalHits,
  seenV2: seenV2.results.map((w) => w.workflowId),
});
process.exit(0);
