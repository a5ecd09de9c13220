// Calls every method of the published Conductor SDK's clients that the
// other scripts leave out, on a secure node, as an admin (e2e/clients_sdk_test.go):
// MetadataClient's tags and deletions, WorkflowExecutor's signals, state
// updates, skips, go-backs and removals, the ApplicationClient and
// AuthorizationClient, the SchedulerClient, TaskHandler's worker() with
// its task definition, and the EventClient calls of Orkes features not
// served. Each call's answer and the state it changed are checked.
// Environment: CONDUCTOR_SERVER_URL, KEY_ID, KEY_SECRET. Prints
// {"step":"done","calls":N} last; exits non-zero on any failed check.
import assert from "node:assert/strict";
import {
  ApplicationClient,
  AuthorizationClient,
  EventClient,
  MetadataClient,
  SchedulerClient,
  SecretClient,
  TaskHandler,
  TaskManager,
  WorkflowExecutor,
  clearWorkerRegistry,
  orkesConductorClient,
  simpleTask,
  worker,
} from "@io-orkes/conductor-javascript";

const { CONDUCTOR_SERVER_URL: serverUrl, KEY_ID, KEY_SECRET } = process.env;
const quiet = { info() {}, debug() {}, warn() {}, error() {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
setTimeout(() => {
  console.error("clients.mjs: timed out");
  process.exit(3);
}, 75_000).unref();

const client = await orkesConductorClient({ serverUrl, keyId: KEY_ID, keySecret: KEY_SECRET, logger: quiet });
const metadata = new MetadataClient(client);
const executor = new WorkflowExecutor(client);
let calls = 0;
// call counts the SDK methods this script checks, for the Go test.
const call = (p) => {
  calls++;
  return p;
};

async function until(id, pred) {
  for (const deadline = Date.now() + 30_000; ; await sleep(25)) {
    const wf = await executor.getWorkflow(id, true);
    if (pred(wf)) return wf;
    assert.ok(Date.now() < deadline, `workflow ${id}: ${wf.status} ${JSON.stringify(wf.tasks.map((t) => [t.referenceTaskName, t.status]))}`);
  }
}
const waiting = (ref) => (wf) => wf.tasks.some((t) => t.referenceTaskName === ref && t.status === "IN_PROGRESS");
const wait = (ref, inputParameters = {}) => ({ name: ref, taskReferenceName: ref, type: "WAIT", inputParameters });

// MetadataClient: updateTask upserts; tags are set, read and deleted one
// at a time; a version and a task definition are unregistered.
await call(metadata.updateTask({ name: "cl_task", retryCount: 0 }));
await call(metadata.updateTask({ name: "cl_task", retryCount: 1, description: "changed" }));
const def = await metadata.getTask("cl_task");
assert.deepEqual([def.retryCount, def.description], [1, "changed"]);
await metadata.registerWorkflowDef({ name: "cl_flow", version: 1, timeoutSeconds: 0,
  tasks: [simpleTask("a", "cl_task", {}), wait("w"), simpleTask("b", "cl_task", {})] }, true);
await metadata.registerWorkflowDef({ name: "cl_flow", version: 2, timeoutSeconds: 0, tasks: [wait("w")] }, true);
await metadata.registerWorkflowDef({ name: "cl_wait", version: 1, timeoutSeconds: 0,
  tasks: [wait("w", { a: 1 }), wait("w2", { b: 2 })] }, true);
assert.ok((await call(metadata.getAllWorkflowDefs())).some((d) => d.name === "cl_flow" && d.version === 2));
await call(metadata.setWorkflowTags([{ key: "a", value: "1" }, { key: "b", value: "2" }], "cl_flow"));
await call(metadata.deleteWorkflowTag({ key: "a", value: "1" }, "cl_flow"));
assert.deepEqual(await call(metadata.getWorkflowTags("cl_flow")), [{ key: "b", value: "2" }]);
await call(metadata.setTaskTags([{ key: "a", value: "1" }], "cl_task"));
assert.deepEqual(await call(metadata.getTaskTags("cl_task")), [{ key: "a", value: "1" }]);
await call(metadata.deleteTaskTag({ key: "a", value: "1" }, "cl_task"));
assert.deepEqual(await metadata.getTaskTags("cl_task"), []);
await call(metadata.unregisterWorkflow("cl_flow", 2));
assert.equal((await metadata.getWorkflowDef("cl_flow")).version, 1);
await assert.rejects(metadata.unregisterWorkflow("cl_flow", 2), /not found|No such workflow/);
await metadata.updateTask({ name: "cl_gone" });
await call(metadata.unregisterTask("cl_gone"));
await assert.rejects(metadata.getTask("cl_gone"), /No such taskType/);

// WorkflowExecutor.
const corr = `cl-corr-${Date.now()}`;
const [first, second] = await call(Promise.all(executor.startWorkflows([
  { name: "cl_wait", input: {} }, { name: "cl_wait", input: {}, correlationId: corr }])));
const execution = await call(executor.getExecution(first));
assert.equal(execution.workflowId, first);
assert.ok(Array.isArray(execution.tasks));
await until(first, waiting("w"));
assert.deepEqual((await call(executor.updateVariables(first, { v: 7 }))).variables, { v: 7 });
// signal completes the blocking task; BLOCKING_TASK_INPUT answers the
// next one, with its input.
const signalled = await call(executor.signal(first, "COMPLETED", { o: 1 }, "BLOCKING_TASK_INPUT"));
assert.equal(signalled.responseType, "BLOCKING_TASK_INPUT");
assert.equal(signalled.getBlockingTask().referenceTaskName, "w2");
assert.deepEqual(signalled.getTaskInput(), { b: 2 });
await until(second, waiting("w"));
await call(executor.signalAsync(second, "COMPLETED", {}));
await until(second, waiting("w2"));
const byCorrelation = await call(executor.getByCorrelationIds({ correlationIds: [corr], workflowNames: ["cl_wait"] }, true, true));
assert.deepEqual(byCorrelation[corr].map((w) => [w.workflowId, w.tasks.length]), [[second, 2]]);
const updated = await call(executor.updateState(second, { taskReferenceName: "w2",
  taskResult: { status: "COMPLETED", outputData: { done: 1 } }, variables: { s: 1 } }, `cl-state-${Date.now()}`));
assert.equal(updated.workflowId, second);
let wf = await until(second, (w) => w.status === "COMPLETED");
assert.deepEqual([wf.variables, wf.output], [{ s: 1 }, { done: 1 }]);
const run = await call(executor.executeWorkflow({ name: "cl_wait", version: 1, input: {} }, "cl_wait", 1,
  `cl-run-${Date.now()}`, "", 5, "SYNCHRONOUS", "BLOCKING_TASK"));
assert.equal(run.responseType, "BLOCKING_TASK");
assert.equal(run.getBlockingTask().referenceTaskName, "w");
await executor.terminate(run.workflowId, "done");

// skip a task before it is scheduled, then go back to a task and to the
// first task of a type: each reruns the workflow from there.
const manager = new TaskManager(client, [{ taskDefName: "cl_task", execute: async () => ({ status: "COMPLETED", outputData: { ok: 1 } }) }],
  { logger: quiet, options: { pollInterval: 20 } });
try {
  const id = await executor.startWorkflow({ name: "cl_flow", version: 1, input: {} });
  await call(executor.skipTasksFromWorkflow(id, "b", { taskOutput: { skipped: true } }));
  // Polled only now: a completed before the skip came would have w
  // scheduled, and b recorded after it (as Conductor appends it too).
  manager.startPolling();
  await until(id, waiting("w"));
  await executor.updateTaskByRefName("w", id, "COMPLETED", {});
  wf = await until(id, (w) => w.status === "COMPLETED");
  // The skipped task is recorded when skipped, as Conductor does: before w.
  assert.deepEqual(wf.tasks.map((t) => [t.referenceTaskName, t.status]), [["a", "COMPLETED"], ["b", "SKIPPED"], ["w", "COMPLETED"]]);
  assert.deepEqual(wf.tasks[1].outputData, { skipped: true });
  await call(executor.goBackToTask(id, (t) => t.referenceTaskName === "w"));
  wf = await until(id, (w) => w.status === "RUNNING" && waiting("w")(w));
  assert.equal(wf.tasks[0].status, "COMPLETED");
  await executor.updateTaskByRefName("w", id, "COMPLETED", {});
  await until(id, (w) => w.status === "COMPLETED");
  await call(executor.goBackToFirstTaskMatchingType(id, "WAIT"));
  await until(id, (w) => w.status === "RUNNING" && waiting("w")(w));
  await executor.terminate(id, "removed next");
  // Archived (the default), a terminal workflow stays readable; removed
  // without archive, it is gone.
  await call(executor.deleteWorkflow(id));
  assert.equal((await executor.getWorkflow(id, false)).status, "TERMINATED");
  await call(executor.deleteWorkflow(first, false));
  await assert.rejects(executor.getWorkflow(first, false), /not found/);
} finally {
  await manager.stopPolling();
}

// TaskHandler with worker(): registers the task definition it names.
clearWorkerRegistry();
worker({ taskDefName: "cl_handled", registerTaskDef: true, taskDef: { retryCount: 5 }, pollInterval: 20 })(
  async (task) => ({ status: "COMPLETED", outputData: { handled: task.inputData.n } }));
await metadata.registerWorkflowDef({ name: "cl_handled_flow", version: 1, timeoutSeconds: 0,
  tasks: [simpleTask("h", "cl_handled", { n: "${workflow.input.n}" })], outputParameters: { handled: "${h.output.handled}" } }, true);
const handler = new TaskHandler({ client, scanForDecorated: true, logger: quiet });
await call(handler.startWorkers());
try {
  const id = await executor.startWorkflow({ name: "cl_handled_flow", input: { n: 3 } });
  wf = await until(id, (w) => w.status !== "RUNNING");
  assert.deepEqual([wf.status, wf.output], ["COMPLETED", { handled: 3 }]);
  assert.equal((await metadata.getTask("cl_handled")).retryCount, 5);
} finally {
  await call(handler.stopWorkers());
}

// SecretClient's one method the secrets script leaves out.
await new SecretClient(client).putSecret("cl_secret", "v");
assert.ok((await call(new SecretClient(client).listSecretsThatUserCanGrantAccessTo())).includes("cl_secret"));

// ApplicationClient.
const apps = new ApplicationClient(client);
const app = await apps.createApplication("cl-app");
assert.ok((await call(apps.getAllApplications())).some((a) => a.id === app.id));
assert.equal((await call(apps.getApplication(app.id))).name, "cl-app");
assert.equal((await call(apps.updateApplication(app.id, "cl-app-2"))).name, "cl-app-2");
const key = await apps.createAccessKey(app.id);
assert.equal((await call(apps.getAppByAccessKeyId(key.id))).id, app.id);
const toggled = await call(apps.toggleAccessKeyStatus(app.id, key.id));
assert.deepEqual([toggled.id, toggled.status], [key.id, "INACTIVE"]);
assert.equal((await apps.getAccessKeys(app.id))[0].status, "INACTIVE");
await apps.addApplicationRole(app.id, "WORKER");
await call(apps.removeRoleFromApplicationUser(app.id, "WORKER"));
const auth = new AuthorizationClient(client);
assert.deepEqual((await auth.getUser(`app:${app.id}`)).roles, []);
await call(apps.addApplicationTags(app.id, [{ key: "a", value: "1" }, { key: "b", value: "2" }]));
await call(apps.addApplicationTag(app.id, { key: "c", value: "3" }));
await call(apps.deleteApplicationTag(app.id, { key: "c", value: "3" }));
await call(apps.deleteApplicationTags(app.id, [{ key: "a", value: "1" }]));
assert.deepEqual(await call(apps.getApplicationTags(app.id)), [{ key: "b", value: "2" }]);
await call(apps.deleteAccessKey(app.id, key.id));
assert.deepEqual(await apps.getAccessKeys(app.id), []);
await call(apps.deleteApplication(app.id));
await assert.rejects(apps.getApplication(app.id), /not found/);

// AuthorizationClient.
const user = "cl-user@example.com";
assert.equal((await call(auth.upsertUser(user, { name: "CL", roles: ["USER"] }))).name, "CL");
assert.equal((await call(auth.getUser(user))).id, user);
assert.ok((await call(auth.listUsers())).some((u) => u.id === user));
assert.ok((await call(auth.listUsers(true))).some((u) => u.id === "app:bootstrap-admin"));
assert.equal((await call(auth.upsertGroup("cl-group", { description: "CL", roles: ["USER"] }))).id, "cl-group");
assert.equal((await call(auth.getGroup("cl-group"))).description, "CL");
assert.ok((await call(auth.listGroups())).some((g) => g.id === "cl-group"));
for (const u of ["cl-2@example.com", "cl-3@example.com"]) await auth.upsertUser(u, { name: u, roles: ["USER"] });
await call(auth.addUserToGroup("cl-group", user));
await call(auth.addUsersToGroup("cl-group", ["cl-2@example.com", "cl-3@example.com"]));
assert.equal((await call(auth.getUsersInGroup("cl-group"))).length, 3);
await call(auth.removeUserFromGroup("cl-group", user));
await call(auth.removeUsersFromGroup("cl-group", ["cl-2@example.com"]));
assert.deepEqual((await auth.getUsersInGroup("cl-group")).map((u) => u.id), ["cl-3@example.com"]);
const grant = { subject: { type: "USER", id: user }, target: { type: "WORKFLOW_DEF", id: "cl_wait" }, access: ["READ", "EXECUTE"] };
await auth.grantPermissions(grant);
await auth.grantPermissions({ ...grant, subject: { type: "GROUP", id: "cl-group" }, access: ["READ"] });
const holders = await call(auth.getPermissions("WORKFLOW_DEF", "cl_wait"));
assert.deepEqual(Object.keys(holders).sort(), ["EXECUTE", "READ"]);
assert.deepEqual(holders.EXECUTE, [{ type: "USER", id: user }]);
assert.deepEqual(holders.READ.map((s) => `${s.type}:${s.id}`).sort(), ["GROUP:cl-group", `USER:${user}`]);
const checked = await call(auth.checkPermissions(user, "WORKFLOW_DEF", "cl_wait"));
assert.deepEqual([checked.READ, checked.EXECUTE, checked.DELETE], [true, true, false]);
assert.deepEqual((await call(auth.getGrantedPermissionsForUser(user))).grantedAccess,
  [{ target: { type: "WORKFLOW_DEF", id: "cl_wait" }, access: ["READ", "EXECUTE"] }]);
assert.deepEqual((await call(auth.getGrantedPermissionsForGroup("cl-group"))).grantedAccess,
  [{ target: { type: "WORKFLOW_DEF", id: "cl_wait" }, access: ["READ"] }]);
await call(auth.removePermissions(grant));
assert.deepEqual((await auth.getGrantedPermissionsForUser(user)).grantedAccess, []);
await call(auth.deleteGroup("cl-group"));
await assert.rejects(auth.getGroup("cl-group"), /not found/);
await call(auth.deleteUser(user));
await assert.rejects(auth.getUser(user), /not found/);

// SchedulerClient.
const scheduler = new SchedulerClient(client);
await call(scheduler.saveSchedule({ name: "cl_schedule", cronExpression: "0 0 * * * ?", paused: true,
  startWorkflowRequest: { name: "cl_wait", version: 1, input: {} } }));
const schedule = await call(scheduler.getSchedule("cl_schedule"));
assert.deepEqual([schedule.cronExpression, schedule.paused, schedule.startWorkflowRequest.name], ["0 0 * * * ?", true, "cl_wait"]);
assert.deepEqual((await call(scheduler.getAllSchedules())).map((s) => s.name), ["cl_schedule"]);
assert.deepEqual(await call(scheduler.getAllSchedules("cl_flow")), []);
await call(scheduler.resumeSchedule("cl_schedule"));
assert.equal((await scheduler.getSchedule("cl_schedule")).paused, false);
await call(scheduler.pauseSchedule("cl_schedule", "maintenance"));
const paused = await scheduler.getSchedule("cl_schedule");
assert.deepEqual([paused.paused, paused.pausedReason], [true, "maintenance"]);
// A start time on a tick lists it: the schedule fires there.
const from = Date.UTC(2030, 0, 1);
assert.deepEqual(await call(scheduler.getNextFewSchedules("0 0 * * * ?", from, from + 86_400_000, 3)),
  [from, from + 3_600_000, from + 7_200_000]);
const executions = await call(scheduler.search(0, 10, undefined, "*", "scheduleName IN (cl_schedule)"));
assert.deepEqual([executions.totalHits, executions.results], [0, []]);
await call(scheduler.setSchedulerTags([{ key: "a", value: "1" }], "cl_schedule"));
assert.deepEqual(await call(scheduler.getSchedulerTags("cl_schedule")), [{ key: "a", value: "1" }]);
await call(scheduler.deleteSchedulerTags([{ key: "a", value: "1" }], "cl_schedule"));
assert.deepEqual(await scheduler.getSchedulerTags("cl_schedule"), []);
await scheduler.resumeSchedule("cl_schedule");
await call(scheduler.pauseAllSchedules());
assert.match((await scheduler.getSchedule("cl_schedule")).pausedReason, /^Paused by an admin/);
await call(scheduler.resumeAllSchedules());
assert.equal((await scheduler.getSchedule("cl_schedule")).paused, false);
await call(scheduler.requeueAllExecutionRecords());
await call(scheduler.deleteSchedule("cl_schedule"));
await assert.rejects(scheduler.getSchedule("cl_schedule"), /not found/);

// EventClient: Orkes's event executions, queue configurations and its
// test endpoint are not served, and each call says so.
const events = new EventClient(client);
for (const f of [
  () => events.getAllActiveEventHandlers(),
  () => events.getEventHandlersWithStats(),
  () => events.getQueueConfig("nats", "cl"),
  () => events.putQueueConfig("nats", "cl", "{}"),
  () => events.deleteQueueConfig("nats", "cl"),
  () => events.test(),
]) {
  await assert.rejects(call(f()), /no endpoint/, f.toString());
}

console.log(JSON.stringify({ step: "done", calls }));
process.exit(0);
