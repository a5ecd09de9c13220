// Drives flowvault with the published Conductor SDK authenticating by an
// access key (auth e2e tests). Environment: CONDUCTOR_SERVER_URL, KEY_ID,
// KEY_SECRET; WAIT_MS makes it wait that long before a last call, so that
// its token expires and the SDK must refresh it through EXPIRED_TOKEN.
// Prints one JSON line per step; exits non-zero on any failure.
import { orkesConductorClient, MetadataClient, ApplicationClient } from "@io-orkes/conductor-javascript";

const serverUrl = process.env.CONDUCTOR_SERVER_URL;
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));

const client = await orkesConductorClient({ serverUrl, keyId: process.env.KEY_ID, keySecret: process.env.KEY_SECRET });
const metadata = new MetadataClient(client);
await metadata.registerTask({ name: "sdk_auth_task", retryCount: 1, timeoutSeconds: 60, responseTimeoutSeconds: 30 });
const task = await metadata.getTask("sdk_auth_task");
out("metadata", { name: task.name, createdBy: task.createdBy });

// Manage an application and its key with the SDK, then log in with it.
const apps = new ApplicationClient(client);
const app = await apps.createApplication("sdk-app");
await apps.addApplicationRole(app.id, "METADATA_MANAGER"); // reads every definition
const key = await apps.createAccessKey(app.id);
const keys = await apps.getAccessKeys(app.id);
out("application", { id: app.id, keys: keys.length, status: keys[0].status, listed: JSON.stringify(keys).includes(key.secret) });
const appClient = await orkesConductorClient({ serverUrl, keyId: key.id, keySecret: key.secret });
const defs = await new MetadataClient(appClient).getAllTaskDefs();
out("app-login", { taskDefs: defs.map((d) => d.name) });

const wait = Number(process.env.WAIT_MS || 0);
if (wait > 0) {
  await new Promise((r) => setTimeout(r, wait));
  const again = await metadata.getTask("sdk_auth_task");
  out("after-expiry", { name: again.name });
}
process.exit(0);
