// A flowvault worker in JavaScript, written from docs/worker-protocol.md
// with nothing but the NATS client packages. The Go test TestNodeWorker runs
// it against a real server.
//
//   flowvault worker-credentials --task-types double --out double.creds
//   NATS_URL=nats://127.0.0.1:4222 NATS_CREDS=double.creds TASK_TYPE=double TASKS=5 node worker.mjs
//
// It doubles inputData.n, fails tasks whose input says {"fail": true}, and
// exits after TASKS tasks. With MODE=poll it waits for tasks at an engine
// ("Waiting for a task at an engine"); with MODE=chain it does too, and
// its results wait for the next task ("Reporting a result and waiting for
// the next task"); otherwise it pulls announcements from the queue and
// takes them ("Taking a task").
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";

const url = process.env.NATS_URL;
const creds = readFileSync(process.env.NATS_CREDS);
const type = process.env.TASK_TYPE;
const want = Number(process.env.TASKS || "1");
const workerId = process.env.WORKER_ID || "node-worker";
const consumerName = `fvq_${type}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The credentials let this user receive replies only under
// _INBOX_<its public key>: the `sub` claim of the JWT in the creds file.
const userJWT = /-----BEGIN NATS USER JWT-----\s*(\S+)\s*------END NATS USER JWT------/.exec(creds.toString())[1];
const user = JSON.parse(Buffer.from(userJWT.split(".")[1], "base64url").toString()).sub;

const nc = await connect({
  servers: url,
  name: workerId,
  authenticator: credsAuthenticator(creds),
  inboxPrefix: `_INBOX_${user}`,
});
const js = jetstream(nc);

const requestTimeout = 10000;

async function request(subject, body) {
  const reply = await nc.request(subject, JSON.stringify(body), { timeout: requestTimeout });
  return reply.json();
}

// nextTask waits at an engine for a task and accepts the one it offers.
async function pollTask() {
  for (;;) {
    let m;
    try {
      m = await nc.request(`fv.engine.poll.${type}`, JSON.stringify({ workerId, waitMs: 5000 }), { timeout: 15000 });
    } catch {
      await sleep(200); // no engine yet, or no answer: poll again
      continue;
    }
    const answer = m.json();
    if (answer.error) {
      await sleep(200);
      continue;
    }
    if (!answer.task) continue;
    m.respond(JSON.stringify({ accept: true }));
    return answer.task;
  }
}

// The engine creates the queue's consumer with the first dispatch.
let consumer;
async function takeTask() {
  while (!consumer) {
    try {
      const c = await js.consumers.get("FV_DISPATCH", consumerName);
      await c.info();
      consumer = c;
    } catch {
      await sleep(200);
    }
  }
  for (;;) {
    let m;
    try {
      m = await consumer.next({ expires: 5000 });
      // Nothing came: is the consumer still there?
      if (!m) await consumer.info();
    } catch {
      // The engine deleted the queue's consumer, idle: look it up again.
      consumer = undefined;
      return takeTask();
    }
    if (!m) continue;
    const dispatch = m.json();
    const take = await request(`fv.engine.take.${type}`, {
      taskId: dispatch.taskId,
      workflowInstanceId: dispatch.workflowInstanceId,
      workerId,
      waitMs: requestTimeout,
    });
    if (take.error) {
      if (take.error.code === "unavailable" || take.error.code === "internal") m.nak(1000);
      else m.ack();
      continue;
    }
    m.ack();
    return take.task;
  }
}

// report sends a result until it is recorded. With chain, the result also
// waits for the next task, and report returns the task offered with its
// answer, accepted, if any.
async function report(result, chain) {
  const body = chain ? { ...result, next: { waitMs: 5000 } } : result;
  for (let attempt = 0; ; attempt++) {
    try {
      // The answer comes when the wait is over: wait longer than it.
      const m = await nc.request(`fv.engine.result.${type}`, JSON.stringify(body), { timeout: requestTimeout + 5000 });
      const r = m.json();
      if (r.ok) {
        if (!r.next || !r.next.task) return null;
        m.respond(JSON.stringify({ accept: true }));
        return r.next.task;
      }
      if (r.error && r.error.code !== "unavailable" && r.error.code !== "internal") {
        console.error("result rejected", r.error);
        process.exit(1);
      }
    } catch (e) {
      if (attempt > 20) throw e;
    }
    await sleep(200);
  }
}

const mode = process.env.MODE;
let done = 0;
let chained = 0; // tasks that came with a result's answer
let next = null;
while (done < want) {
  const task = next || (mode === "poll" || mode === "chain" ? await pollTask() : await takeTask());
  const result = {
    taskId: task.taskId,
    workflowInstanceId: task.workflowInstanceId,
    workerId,
    logs: [{ log: `node worker saw n=${task.inputData.n}`, createdTime: Date.now() }],
  };
  if (task.inputData.fail === true) {
    result.status = "FAILED_WITH_TERMINAL_ERROR";
    result.reasonForIncompletion = "asked to fail";
  } else {
    result.status = "COMPLETED";
    result.outputData = { doubled: task.inputData.n * 2, by: "node" };
  }
  // The last result waits for nothing: the worker stops after it.
  next = await report(result, mode === "chain" && done + 1 < want);
  if (next) chained++;
  done++;
}
await nc.drain();
console.log(`done ${done} chained ${chained}`);
