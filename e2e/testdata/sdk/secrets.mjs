// Manages secrets and runs a secret-bearing workflow with the published
// Conductor SDK, authenticating by access keys (e2e/secrets_sdk_test.go).
// Environment: CONDUCTOR_SERVER_URL, KEY_ID, KEY_SECRET (an admin key),
// SECRET_VALUE (the value to store as api_token), HTTP_URL (a local server
// the workflow's HTTP task calls). Prints one JSON line per step; exits
// non-zero on any failed check.
import assert from "node:assert/strict";
import {
  ApplicationClient,
  AuthorizationClient,
  MetadataClient,
  SecretClient,
  TaskManager,
  WorkflowExecutor,
  orkesConductorClient,
} from "@io-orkes/conductor-javascript";

const { CONDUCTOR_SERVER_URL: serverUrl, KEY_ID, KEY_SECRET, SECRET_VALUE: value, HTTP_URL } = process.env;
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
setTimeout(() => {
  console.error("secrets.mjs: timed out");
  process.exit(3);
}, 60_000).unref();

const admin = await orkesConductorClient({ serverUrl, keyId: KEY_ID, keySecret: KEY_SECRET });
const secrets = new SecretClient(admin);

// The SecretClient surface: put, read, exists, list, tags, delete.
await secrets.putSecret("api_token", value);
assert.equal(await secrets.getSecret("api_token"), value);
assert.equal(await secrets.secretExists("api_token"), true);
// The server answers 404 for an absent key, as Orkes does; the SDK turns
// that into a rejection (it would report any 200 body, even false, as true).
await assert.rejects(secrets.secretExists("sdk_never_stored"), /not found/);
await secrets.putSecret("sdk_scratch", "scratch-value");
const names = await secrets.listAllSecretNames();
assert.ok(names.includes("api_token") && names.includes("sdk_scratch"), JSON.stringify(names));
await secrets.setSecretTags([{ key: "team", value: "payments" }, { key: "env", value: "test" }], "api_token");
await secrets.deleteSecretTags([{ key: "env", value: "test" }], "api_token");
const tags = await secrets.getSecretTags("api_token");
await secrets.deleteSecret("sdk_scratch");
await assert.rejects(secrets.secretExists("sdk_scratch"), /not found/);
await assert.rejects(secrets.getSecret("sdk_scratch"));
out("manage", { names: (await secrets.listAllSecretNames()).sort(), tags: tags.map((t) => `${t.key}:${t.value}`) });

// A worker application, allowed to execute one task type and nothing else.
const apps = new ApplicationClient(admin);
const app = await apps.createApplication("sdk-secret-worker");
await apps.addApplicationRole(app.id, "WORKER");
const key = await apps.createAccessKey(app.id);
await new MetadataClient(admin).registerTask({ name: "sdk_secret_task", retryCount: 0, timeoutSeconds: 60, responseTimeoutSeconds: 30 });
await new AuthorizationClient(admin).grantPermissions({
  subject: { type: "USER", id: `app:${app.id}` },
  target: { type: "TASK_DEF", id: "sdk_secret_task" },
  access: ["EXECUTE"],
});

// The worker sees the resolved value in its input and hands a copy on
// under _secrets; the HTTP task sends the secret itself and the copy.
await new MetadataClient(admin).registerWorkflowDef({
  name: "sdk_secret_flow", version: 1, schemaVersion: 2, ownerEmail: "sdk@example.com",
  tasks: [
    { name: "sdk_secret_task", taskReferenceName: "use_ref", type: "SIMPLE",
      inputParameters: { token: "${workflow.secrets.api_token}" } },
    { name: "call_api", taskReferenceName: "call_ref", type: "HTTP",
      inputParameters: { http_request: { uri: HTTP_URL, method: "GET",
        headers: { Authorization: "Bearer ${workflow.secrets.api_token}", "X-Echo": "${use_ref.output._secrets.echo}" } } } },
  ],
  outputParameters: { matched: "${use_ref.output.matched}", status: "${call_ref.output.response.statusCode}" },
}, true);

const workerClient = await orkesConductorClient({ serverUrl, keyId: key.id, keySecret: key.secret });
const manager = new TaskManager(workerClient, [{
  taskDefName: "sdk_secret_task",
  execute: async (task) => ({
    status: "COMPLETED",
    outputData: { matched: task.inputData.token === value, _secrets: { echo: task.inputData.token } },
  }),
}], { options: { pollInterval: 20, concurrency: 1 }, logger: { info() {}, debug() {}, warn() {}, error() {} } });
manager.startPolling();

const executor = new WorkflowExecutor(admin);
const id = await executor.startWorkflow({ name: "sdk_secret_flow", version: 1, input: {} });
let wf;
for (const deadline = Date.now() + 30_000; ; await sleep(25)) {
  wf = await executor.getWorkflow(id, true);
  if (wf.status !== "RUNNING") break;
  assert.ok(Date.now() < deadline, `workflow ${id} still running`);
}
await manager.stopPolling();
const read = JSON.stringify(wf);
out("run", {
  id, status: wf.status, output: wf.output,
  literal: wf.tasks[0].inputData.token,
  workerOutput: wf.tasks[0].outputData,
  leaked: read.includes(value),
});
process.exit(0);
