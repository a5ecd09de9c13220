// Drives a flowvault server with the published Conductor JavaScript SDK
// (@io-orkes/conductor-javascript 4.0.0) the way an SDK user would, and
// checks every result. e2e/sdk_test.go runs it:
//
//   CONDUCTOR_SERVER_URL=http://127.0.0.1:PORT node sdk.mjs
//
// It exits 0 when every check passed, and prints one line
// `RESULT {json}` naming the workflows it ran, whose final states the Go
// test checks again.

import assert from "node:assert/strict";
import {
  EventClient,
  MetadataClient,
  NonRetryableException,
  OrkesClients,
  TaskClient,
  TaskManager,
  WorkflowExecutor,
  orkesConductorClient,
  simpleTask,
  taskDefinition,
} from "@io-orkes/conductor-javascript";

const serverUrl = process.env.CONDUCTOR_SERVER_URL;
if (!serverUrl) {
  console.error("CONDUCTOR_SERVER_URL is not set");
  process.exit(2);
}
const quiet = { info() {}, debug() {}, warn() {}, error() {} };
const result = {};

setTimeout(() => {
  console.error("sdk.mjs: timed out");
  process.exit(3);
}, 150_000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: ${last?.message ?? last}`);
    }
    await sleep(25);
  }
}

const TERMINAL = new Set(["COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"]);

async function waitTerminal(executor, id) {
  return eventually(`workflow ${id} did not finish`, async () => {
    const wf = await executor.getWorkflow(id, true);
    assert.ok(TERMINAL.has(wf.status), `status ${wf.status}`);
    return wf;
  });
}

async function waitStatus(executor, id, status) {
  return eventually(`workflow ${id} is not ${status}`, async () => {
    const wf = await executor.getWorkflow(id, true);
    assert.equal(wf.status, status);
    return wf;
  });
}

async function section(name, fn) {
  const begin = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - begin} ms)`);
}

// Executions per task id, across every worker in this process.
const executions = new Map();
const executed = (task) => executions.set(task.taskId, (executions.get(task.taskId) ?? 0) + 1);
const flakyAttempts = new Map();

async function main() {
  // Clients, the way the SDK's README creates them. Without keys the SDK
  // never asks for a token; with keys it asks POST /api/token, gets 404
  // from a server without authentication and carries on without it ("OSS
  // mode").
  let client, clients;
  await section("clients", async () => {
    client = await orkesConductorClient({ serverUrl, logger: quiet });
    clients = new OrkesClients(client);
    const begin = Date.now();
    const withKeys = await OrkesClients.from({ serverUrl, keyId: "key", keySecret: "secret", logger: quiet });
    assert.ok(Date.now() - begin < 5_000, "token 404 must switch to OSS mode at once, not retry");
    assert.equal((await withKeys.getClient().getAuthenticationHeaders?.()) ?? null, null);
    assert.ok(Array.isArray(await withKeys.getMetadataClient().getAllTaskDefs()));
  });
  const metadata = new MetadataClient(client);
  const executor = new WorkflowExecutor(client);
  const tasks = new TaskClient(client);
  assert.ok(clients.getWorkflowClient() instanceof WorkflowExecutor);

  await section("metadata", async () => {
    await metadata.registerTasks([
      taskDefinition({ name: "sdk_double", retryCount: 0, responseTimeoutSeconds: 30 }),
      taskDefinition({ name: "sdk_flaky", retryCount: 2, retryDelaySeconds: 0, responseTimeoutSeconds: 30 }),
      taskDefinition({ name: "sdk_fatal", retryCount: 3, retryDelaySeconds: 0, responseTimeoutSeconds: 30 }),
    ]);
    await metadata.registerTask(taskDefinition({ name: "sdk_manual", retryCount: 0, responseTimeoutSeconds: 30 }));
    const def = await metadata.getTask("sdk_flaky");
    assert.equal(def.name, "sdk_flaky");
    assert.equal(def.retryCount, 2);
    assert.equal(def.retryDelaySeconds, 0);
    assert.equal(def.responseTimeoutSeconds, 30);

    const flows = [
      { name: "sdk_double_flow", tasks: [simpleTask("double_ref", "sdk_double", { x: "${workflow.input.x}" })],
        outputParameters: { doubled: "${double_ref.output.doubled}" } },
      { name: "sdk_flaky_flow", tasks: [simpleTask("flaky_ref", "sdk_flaky", {})],
        outputParameters: { attempt: "${flaky_ref.output.attempt}" } },
      { name: "sdk_fatal_flow", tasks: [simpleTask("fatal_ref", "sdk_fatal", {})] },
      { name: "sdk_manual_flow", tasks: [
        simpleTask("manual_ref", "sdk_manual", {}),
        { name: "hold", taskReferenceName: "wait_ref", type: "WAIT" },
      ] },
      { name: "sdk_wait_flow", tasks: [{ name: "hold", taskReferenceName: "wait_ref", type: "WAIT" }],
        outputParameters: { answer: "${wait_ref.output.answer}" } },
    ];
    for (const f of flows) {
      await metadata.registerWorkflowDef({ version: 1, timeoutSeconds: 0, inputParameters: [], ...f }, true);
    }
    await executor.registerWorkflow(true, { ...flows[0], version: 1, timeoutSeconds: 0 });
    const got = await metadata.getWorkflowDef("sdk_double_flow");
    assert.equal(got.version, 1);
    assert.deepEqual(got.tasks[0].inputParameters, { x: "${workflow.input.x}" });
    await assert.rejects(metadata.getWorkflowDef("sdk_no_such_flow"), /No such workflow found by name: sdk_no_such_flow/);

    // The SDK's metadataResource.getAllWorkflows sends Orkes's tagKey,
    // tagValue and metadata: only the definitions so tagged, with tags.
    await metadata.addWorkflowTag({ key: "sdk", value: "listed" }, "sdk_fatal_flow");
    const tagged = await client.metadataResource.getAllWorkflows("READ", true, "sdk", "listed");
    assert.deepEqual(tagged.map((d) => [d.name, d.version, d.tags]), [["sdk_fatal_flow", 1, [{ key: "sdk", value: "listed" }]]]);
    // And getTaskDefs the same three for task definitions.
    await metadata.addTaskTag({ key: "sdk", value: "listed" }, "sdk_fatal");
    const taggedTasks = await client.metadataResource.getTaskDefs("READ", true, "sdk", "listed");
    assert.deepEqual(taggedTasks.map((d) => [d.name, d.tags]), [["sdk_fatal", [{ key: "sdk", value: "listed" }]]]);

    // A minimal registration reads with Conductor's defaults, the fields
    // the SDK's TaskDef and WorkflowDef types require among them.
    await metadata.registerTask({ name: "sdk_minimal_task" });
    const task = await metadata.getTask("sdk_minimal_task");
    assert.deepEqual([task.timeoutSeconds, task.totalTimeoutSeconds, task.retryCount, task.retryLogic, task.responseTimeoutSeconds],
      [0, 0, 3, "FIXED", 3600]);
    await metadata.registerWorkflowDef({ name: "sdk_minimal_flow", tasks: [{ name: "sdk_minimal_task", taskReferenceName: "m" }] }, true);
    const flow = await metadata.getWorkflowDef("sdk_minimal_flow");
    assert.deepEqual([flow.timeoutSeconds, flow.timeoutPolicy, flow.restartable, flow.tasks[0].type, flow.tasks[0].optional],
      [0, "ALERT_ONLY", true, "SIMPLE", false]);
  });

  // Workers: the legacy TaskManager (batch poll + update-v2).
  const manager = new TaskManager(client, [
    {
      taskDefName: "sdk_double",
      concurrency: 4,
      execute: async (task) => {
        executed(task);
        return { status: "COMPLETED", outputData: { doubled: task.inputData.x * 2 } };
      },
    },
    {
      taskDefName: "sdk_flaky",
      execute: async (task) => {
        executed(task);
        const n = (flakyAttempts.get(task.workflowInstanceId) ?? 0) + 1;
        flakyAttempts.set(task.workflowInstanceId, n);
        if (n <= 3) {
          throw new Error(`boom ${n}`);
        }
        return { status: "COMPLETED", outputData: { attempt: n } };
      },
    },
    {
      taskDefName: "sdk_fatal",
      execute: async (task) => {
        executed(task);
        throw new NonRetryableException("order cancelled");
      },
    },
  ], { logger: quiet, options: { pollInterval: 10, concurrency: 1, workerID: "sdk-worker" } });
  manager.startPolling();
  const pollStart = Date.now();

  try {
    await section("workers", async () => {
      const byRequest = await executor.startWorkflow({ name: "sdk_double_flow", version: 1, input: { x: 21 }, correlationId: "sdk-c1" });
      assert.equal(typeof byRequest, "string");
      const byName = await executor.startWorkflowByName("sdk_double_flow", { x: 5 }, 1, "sdk-c2");
      assert.equal(typeof byName, "string");
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        executor.startWorkflow({ name: "sdk_double_flow", input: { x: i } })));
      const flaky = await executor.startWorkflow({ name: "sdk_flaky_flow", input: {} });
      const fatal = await executor.startWorkflow({ name: "sdk_fatal_flow", input: {} });
      await assert.rejects(executor.startWorkflow({ name: "sdk_no_such_flow" }), /No such workflow found by name: sdk_no_such_flow/);

      let wf = await waitTerminal(executor, byRequest);
      assert.equal(wf.status, "COMPLETED");
      assert.deepEqual(wf.output, { doubled: 42 });
      assert.equal(wf.correlationId, "sdk-c1");
      assert.equal(wf.tasks[0].workerId, "sdk-worker");
      assert.equal(wf.tasks[0].taskType, "sdk_double");
      wf = await waitTerminal(executor, byName);
      assert.equal(wf.status, "COMPLETED");
      assert.deepEqual(wf.output, { doubled: 10 });
      assert.equal(wf.correlationId, "sdk-c2");
      for (const [i, id] of many.entries()) {
        wf = await waitTerminal(executor, id);
        assert.equal(wf.status, "COMPLETED");
        assert.deepEqual(wf.output, { doubled: 2 * i });
      }

      // A thrown Error fails the task; it is retried per its definition
      // (retryCount 2: three attempts), then the workflow fails.
      wf = await waitTerminal(executor, flaky);
      assert.equal(wf.status, "FAILED");
      assert.deepEqual(wf.tasks.map((t) => [t.status, t.retryCount]), [["FAILED", 0], ["FAILED", 1], ["FAILED", 2]]);
      assert.equal(wf.tasks[2].reasonForIncompletion, "boom 3");
      const logs = await tasks.getTaskLogs(wf.tasks[0].taskId);
      assert.ok(Array.isArray(logs) && logs.some((l) => l.log.includes("boom 1")), JSON.stringify(logs));

      // NonRetryableException: FAILED_WITH_TERMINAL_ERROR, never retried.
      wf = await waitTerminal(executor, fatal);
      assert.equal(wf.status, "FAILED");
      assert.equal(wf.tasks.length, 1);
      assert.equal(wf.tasks[0].status, "FAILED_WITH_TERMINAL_ERROR");
      assert.equal(wf.tasks[0].reasonForIncompletion, "order cancelled");

      // Retry the failed workflow: the fourth attempt succeeds.
      await executor.retry(flaky, false);
      wf = await waitStatus(executor, flaky, "COMPLETED");
      assert.deepEqual(wf.output, { attempt: 4 });

      for (const [id, n] of executions) {
        assert.equal(n, 1, `task ${id} executed ${n} times`);
      }
      assert.equal(executions.size, 2 + 20 + 4 + 1);
      Object.assign(result, { completed: [byRequest, byName, ...many], retried: flaky, fatal });
    });

    await section("task client", async () => {
      const id = await executor.startWorkflow({ name: "sdk_manual_flow", input: {} });
      let wf = await executor.getWorkflow(id, true);
      const manual = wf.tasks[0];
      assert.equal(manual.status, "SCHEDULED");
      const sizes = await eventually("queue size", async () => {
        const s = await tasks.getQueueSizeForTask(["sdk_manual", "sdk_never"]);
        assert.deepEqual(s, { sdk_manual: 1, sdk_never: 0 });
        return s;
      });
      assert.equal(typeof sizes.sdk_manual, "number");

      const task = await tasks.getTask(manual.taskId);
      assert.equal(task.taskId, manual.taskId);
      assert.equal(task.referenceTaskName, "manual_ref");
      assert.equal(task.status, "SCHEDULED");
      await assert.rejects(tasks.getTask("sdk-no-such-task"), /not found/i);

      await tasks.addTaskLog(manual.taskId, "hello log");
      const logs = await tasks.getTaskLogs(manual.taskId);
      assert.ok(Array.isArray(logs));
      assert.equal(logs.length, 1);
      assert.equal(logs[0].log, "hello log");
      assert.equal(logs[0].taskId, manual.taskId);

      // A SCHEDULED task nobody polled, completed by reference name; the
      // body (which this client wraps in outputData) is the output.
      const taskId = await tasks.updateTaskResult(id, "manual_ref", "COMPLETED", { k: 1 });
      assert.equal(taskId, manual.taskId);
      assert.deepEqual((await tasks.getTask(taskId)).outputData, { outputData: { k: 1 } });
      // (Its dispatch message stays counted in the queue size until the
      // next poll of the queue skips it: sizes count announcements not yet
      // handed to a worker.)

      // The WAIT task, completed synchronously: the answer is the workflow.
      await waitWaiting(executor, id);
      wf = await tasks.updateTaskSync(id, "wait_ref", "COMPLETED", { done: true }, "sdk-operator");
      assert.equal(wf.workflowId, id);
      assert.equal(wf.status, "COMPLETED");
      assert.equal(wf.tasks[1].workerId, "sdk-operator");

      const polls = await tasks.getTaskPollData("sdk_double");
      assert.ok(Array.isArray(polls));
      const mine = polls.find((p) => p.workerId === "sdk-worker");
      assert.ok(mine, JSON.stringify(polls));
      assert.equal(mine.queueName, "sdk_double");
      assert.ok(mine.lastPollTime >= pollStart - 1000, `lastPollTime ${mine.lastPollTime}`);
      assert.deepEqual(await tasks.getTaskPollData("sdk_nobody"), []);
      result.manual = id;
    });

    await section("workflow executor task calls", async () => {
      const id = await executor.startWorkflow({ name: "sdk_manual_flow", input: {} });
      const manual = (await executor.getWorkflow(id, true)).tasks[0];
      const taskId = await executor.updateTaskByRefName("manual_ref", id, "COMPLETED", { r: 1 });
      assert.equal(taskId, manual.taskId);
      assert.deepEqual((await executor.getTask(taskId)).outputData, { r: 1 });
      const wait = (await waitWaiting(executor, id)).tasks[1];
      // A WAIT task updated IN_PROGRESS keeps waiting, with the output.
      assert.equal(await executor.updateTask(wait.taskId, id, "IN_PROGRESS", { greet: "hi" }), wait.taskId);
      const waiting = await executor.getTask(wait.taskId);
      assert.equal(waiting.status, "IN_PROGRESS");
      assert.deepEqual(waiting.outputData, { greet: "hi" });
      const wf = await executor.updateTaskSync("wait_ref", id, "COMPLETED", { w: 2 });
      assert.equal(wf.status, "COMPLETED");
      // A late update of a finished task is accepted and ignored.
      assert.equal(await executor.updateTask(wait.taskId, id, "FAILED", {}), wait.taskId);
      assert.equal((await executor.getTask(wait.taskId)).status, "COMPLETED");
      // A reference with no pending task: 200 with no body, as Conductor
      // OSS answers, and its sync form 404.
      assert.equal(await executor.updateTaskByRefName("no_such_ref", id, "COMPLETED", {}), "");
      await assert.rejects(executor.updateTaskSync("no_such_ref", id, "COMPLETED", {}), /found no running task/);
      result.executorTasks = id;
    });

    await section("lifecycle", async () => {
      const id = await executor.startWorkflowByName("sdk_wait_flow", {}, 1);
      await waitWaiting(executor, id, 0);
      let status = await executor.getWorkflowStatus(id, true, true);
      assert.equal(status.status, "RUNNING");
      assert.equal(status.workflowId, id);
      await executor.pause(id);
      assert.equal((await executor.getWorkflow(id, false)).status, "PAUSED");
      await executor.resume(id);
      assert.equal((await executor.getWorkflow(id, false)).status, "RUNNING");
      await executor.terminate(id, "sdk says stop");
      let wf = await executor.getWorkflow(id, true);
      assert.equal(wf.status, "TERMINATED");
      assert.equal(wf.reasonForIncompletion, "sdk says stop");
      assert.equal(wf.tasks[0].status, "CANCELED");
      await assert.rejects(executor.resume(id));

      await executor.restart(id, false);
      wf = await waitWaiting(executor, id, 0);
      assert.equal(wf.status, "RUNNING");
      await executor.terminate(id, "again");
      await executor.retry(id, false);
      wf = await waitWaiting(executor, id, -1);
      assert.equal(wf.status, "RUNNING");
      await executor.terminate(id, "and again");
      assert.equal(await executor.reRun(id, {}), id);
      await waitWaiting(executor, id, 0);
      await executor.updateTaskByRefName("wait_ref", id, "COMPLETED", { answer: 42 });
      wf = await waitStatus(executor, id, "COMPLETED");
      assert.deepEqual(wf.output, { answer: 42 });
      await assert.rejects(executor.terminate(id, "too late"));
      await assert.rejects(executor.getWorkflow("sdk-no-such-workflow", false), /not found/i);
      result.lifecycle = id;
    });

    await section("search", async () => {
      const found = await executor.search(0, 10, `workflowType IN (sdk_double_flow) AND status IN (COMPLETED)`, "*");
      assert.ok(Array.isArray(found.results));
      assert.ok(found.totalHits >= 22);
      const byId = await executor.search(0, 10, `workflowId="${result.completed[0]}"`, "*");
      assert.equal(byId.results[0].workflowId, result.completed[0]);
      const taskHits = await tasks.search(0, 10, "", "*", "status=COMPLETED");
      assert.ok(Array.isArray(taskHits.results));
    });
    await section("execute", async () => {
      const run = await executor.executeWorkflow({ name: "sdk_double_flow", version: 1, input: { x: 4 } },
        "sdk_double_flow", 1, `sdk-req-${Date.now()}`);
      assert.equal(run.status, "COMPLETED");
      assert.deepEqual(run.output, { doubled: 8 });
      const blocked = await executor.executeWorkflow({ name: "sdk_wait_flow", version: 1, input: {} },
        "sdk_wait_flow", 1, `sdk-req-wait-${Date.now()}`);
      assert.equal(blocked.status, "RUNNING");
      await executor.terminate(blocked.workflowId, "done");
    });
    await section("event handlers", async () => {
      const events = clients.getEventClient();
      assert.ok(events instanceof EventClient);
      // What the server adds to a handler: who saved it, and when.
      const own = ({ createdBy, updatedBy, createTime, updateTime, ...rest }) => rest;
      const onOrder = {
        name: "sdk_on_order",
        event: "nats:sdk.orders",
        condition: "$.amount > 10",
        evaluatorType: "javascript",
        active: true,
        description: "double every large order",
        tags: [{ key: "team", value: "sdk" }],
        actions: [{ action: "start_workflow",
          start_workflow: { name: "sdk_double_flow", version: 1, correlationId: "${orderId}", input: { x: "${amount}" } } }],
      };
      const onPaid = {
        name: "sdk_on_paid",
        event: "nats:sdk.orders",
        active: false,
        actions: [
          { action: "complete_task", complete_task: { workflowId: "${workflowId}", taskRefName: "wait_ref", output: { paid: true } },
            expandInlineJSON: true },
          { action: "update_workflow_variables",
            update_workflow_variables: { workflowId: "${workflowId}", variables: { paid: "${amount}" } } },
        ],
      };
      await events.addEventHandler(onOrder);
      await events.addEventHandlers([onPaid]);

      const all = (await events.getAllEventHandlers()).filter((h) => h.name.startsWith("sdk_on_"));
      assert.deepEqual(all.map((h) => h.name), ["sdk_on_order", "sdk_on_paid"]);
      assert.deepEqual(all.map(own), [onOrder, onPaid]);
      const got = await events.getEventHandlerByName("sdk_on_order");
      assert.deepEqual(own(got), onOrder);
      assert.equal(typeof got.createTime, "number");
      assert.equal(got.updateTime, got.createTime);
      assert.equal(got.createdBy, got.updatedBy);
      await assert.rejects(events.getEventHandlerByName("sdk_no_such_handler"), /EventHandler with name sdk_no_such_handler not found/);

      // The SDK asks for every handler of the event unless told to ask for
      // the active ones only.
      const forEvent = async (activeOnly) =>
        (await events.getEventHandlersForEvent("nats:sdk.orders", activeOnly)).map((h) => h.name);
      assert.deepEqual(await forEvent(), ["sdk_on_order", "sdk_on_paid"]);
      assert.deepEqual(await forEvent(true), ["sdk_on_order"]);
      assert.deepEqual(await events.getEventHandlersForEvent("nats:sdk.other", false), []);

      // A change: the handler as read back, edited and sent again.
      const paid = await events.getEventHandlerByName("sdk_on_paid");
      await events.updateEventHandler({ ...paid, active: true, condition: "$.amount > 0" });
      const changed = await events.getEventHandlerByName("sdk_on_paid");
      assert.deepEqual(own(changed), { ...onPaid, active: true, condition: "$.amount > 0" });
      assert.equal(changed.createTime, paid.createTime);
      assert.ok(changed.updateTime >= paid.updateTime);
      assert.deepEqual(await forEvent(true), ["sdk_on_order", "sdk_on_paid"]);
      await assert.rejects(events.updateEventHandler({ ...onPaid, name: "sdk_no_such_handler" }), /not found/);

      // What cannot run is refused, and stores nothing.
      await assert.rejects(events.addEventHandler(onOrder), /EventHandler with name sdk_on_order already exists/);
      for (const bad of [
        { ...onOrder, name: "sdk_bad", event: "sqs:orders" },
        { ...onOrder, name: "sdk_bad", actions: [] },
        { ...onOrder, name: "sdk_bad", condition: "$.amount >" },
        { ...onOrder, name: "sdk_bad", actions: [{ action: "start_workflow", start_workflow: { input: {} } }] },
        { ...onOrder, name: "sdk_bad", actions: [{ action: "send_email" }] },
      ]) {
        await assert.rejects(events.addEventHandler(bad), /Validation failed/, JSON.stringify(bad));
      }
      await assert.rejects(events.addEventHandlers([{ ...onOrder, name: "sdk_fine" }, { ...onOrder, name: "sdk_bad", event: "nats:" }]),
        /Validation failed/);
      await assert.rejects(events.getEventHandlerByName("sdk_bad"), /not found/);
      await assert.rejects(events.getEventHandlerByName("sdk_fine"), /not found/);

      // Orkes's event executions, messages, queue configuration and
      // incoming events are not served: each call fails saying so (not
      // 405, as if the SDK had used the wrong method).
      for (const call of [
        () => events.getEventExecutions("sdk_on_order"),
        () => events.getEventMessages("nats:sdk.orders"),
        () => events.getAllQueueConfigs(),
        () => events.testConnectivity({ sink: "nats:sdk.orders", input: {} }),
        () => events.handleIncomingEvent({ event: "nats:sdk.orders" }),
      ]) {
        await assert.rejects(call(), /not served/, call.toString());
      }

      // Tags: kept in the handler, the rest of it untouched.
      assert.deepEqual(await events.getTagsForEventHandler("sdk_on_order"), [{ key: "team", value: "sdk" }]);
      assert.deepEqual(await events.getTagsForEventHandler("sdk_on_paid"), []);
      await events.putTagForEventHandler("sdk_on_order", [{ key: "env", value: "prod" }, { key: "team", value: "sdk" }]);
      await events.putTagForEventHandler("sdk_on_order", [{ key: "env", value: "dev" }]);
      assert.deepEqual(await events.getTagsForEventHandler("sdk_on_order"),
        [{ key: "team", value: "sdk" }, { key: "env", value: "prod" }, { key: "env", value: "dev" }]);
      await events.deleteTagForEventHandler("sdk_on_order", { key: "env", value: "dev" });
      await events.deleteTagsForEventHandler("sdk_on_order", [{ key: "team", value: "sdk" }, { key: "team", value: "other" }]);
      const tagged = await events.getEventHandlerByName("sdk_on_order");
      assert.deepEqual(own(tagged), { ...onOrder, tags: [{ key: "env", value: "prod" }] });
      assert.equal(tagged.createTime, got.createTime);
      await assert.rejects(events.getTagsForEventHandler("sdk_no_such_handler"), /not found/);
      await assert.rejects(events.putTagForEventHandler("sdk_no_such_handler", [{ key: "a", value: "b" }]), /not found/);

      await events.removeEventHandler("sdk_on_paid");
      await assert.rejects(events.getEventHandlerByName("sdk_on_paid"), /not found/);
      await assert.rejects(events.removeEventHandler("sdk_on_paid"), /not found/);
      assert.deepEqual(await forEvent(), ["sdk_on_order"]);
      await events.removeEventHandler("sdk_on_order");
      assert.deepEqual((await events.getAllEventHandlers()).filter((h) => h.name.startsWith("sdk_")), []);
    });
    await section("test", async () => {
      const wf = await executor.testWorkflow({
        name: "sdk_double_flow", version: 1, input: { x: 1 },
        taskRefToMockOutput: { double_ref: [{ status: "COMPLETED", output: { doubled: 99 } }] },
      });
      assert.equal(wf.status, "COMPLETED");
      assert.deepEqual(wf.output, { doubled: 99 });
    });
  } finally {
    await manager.stopPolling();
  }
  console.log("RESULT " + JSON.stringify(result));
}

// waitWaiting waits until the workflow's WAIT task (the task at index,
// negative counting from the end) is IN_PROGRESS.
async function waitWaiting(executor, id, index = 1) {
  return eventually(`WAIT task of ${id} not waiting`, async () => {
    const wf = await executor.getWorkflow(id, true);
    const t = wf.tasks.at(index);
    assert.ok(t && t.taskType === "WAIT" && t.status === "IN_PROGRESS", JSON.stringify(t?.status));
    return wf;
  });
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error("sdk.mjs failed:", err);
    process.exit(1);
  },
);
