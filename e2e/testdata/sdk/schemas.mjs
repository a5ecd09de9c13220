// Manages schemas with the published Conductor SDK's SchemaClient and
// starts a workflow that enforces one (e2e/schema_sdk_test.go).
// Environment: CONDUCTOR_SERVER_URL, KEY_ID, KEY_SECRET (an admin key).
// Prints one JSON line per step; exits non-zero on any failed check.
import assert from "node:assert/strict";
import { MetadataClient, SchemaClient, WorkflowExecutor, orkesConductorClient } from "@io-orkes/conductor-javascript";

const { CONDUCTOR_SERVER_URL: serverUrl, KEY_ID, KEY_SECRET } = process.env;
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
setTimeout(() => {
  console.error("schemas.mjs: timed out");
  process.exit(3);
}, 60_000).unref();

const client = await orkesConductorClient({ serverUrl, keyId: KEY_ID, keySecret: KEY_SECRET });
const schemas = new SchemaClient(client);

const order = (required) => ({
  name: "sdk_order",
  version: 1,
  type: "JSON",
  data: { type: "object", required, properties: { orderId: { type: "string" }, amount: { type: "number" } } },
});
await schemas.registerSchema([order(["orderId"])]);
await schemas.registerSchema([order(["orderId", "amount"])], true);
const latest = await schemas.getSchemaByName("sdk_order");
const first = await schemas.getSchema("sdk_order", 1);
const all = await schemas.getAllSchemas();
await assert.rejects(schemas.registerSchema([{ name: "sdk_avro", type: "AVRO", data: {} }]));
out("manage", {
  latest: latest.version,
  latestRequired: latest.data.required,
  firstRequired: first.data.required,
  createdBy: first.createdBy ?? "",
  listed: all.filter((s) => s.name === "sdk_order").map((s) => s.version),
});

await new MetadataClient(client).registerWorkflowDef(
  {
    name: "sdk_schema_flow",
    version: 1,
    enforceSchema: true,
    inputSchema: { name: "sdk_order", version: 2, type: "JSON" },
    tasks: [{ name: "note", taskReferenceName: "note", type: "SET_VARIABLE", inputParameters: { orderId: "${workflow.input.orderId}" } }],
  },
  true,
);
const executor = new WorkflowExecutor(client);
let refused = "";
try {
  await executor.startWorkflow({ name: "sdk_schema_flow", version: 1, input: { orderId: "o-1" } });
} catch (e) {
  refused = String(e?.message ?? e);
}
const id = await executor.startWorkflow({ name: "sdk_schema_flow", version: 1, input: { orderId: "o-1", amount: 5 } });
out("start", { refused, started: typeof id === "string" && id.length > 0 });

await schemas.deleteSchema("sdk_order", 1);
await assert.rejects(schemas.getSchema("sdk_order", 1));
await schemas.deleteSchemaByName("sdk_order");
await assert.rejects(schemas.getSchemaByName("sdk_order"));
out("delete", { left: (await schemas.getAllSchemas()).filter((s) => s.name === "sdk_order").length });
process.exit(0);
