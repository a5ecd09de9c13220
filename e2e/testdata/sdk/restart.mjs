// A TaskManager that outlives a server restart (e2e/workerrestart_test.go):
// it works js_restart tasks, printing "RAN <taskId>" as each starts; a task
// whose input has hold:true waits for a "release" line on stdin before it
// completes. "exit" stops the manager; the process then exits 0. Anything
// the SDK throws that reaches the top ends the process non-zero.
import readline from "node:readline";
import { TaskManager, orkesConductorClient } from "@io-orkes/conductor-javascript";

const serverUrl = process.env.CONDUCTOR_SERVER_URL;
if (!serverUrl) {
  console.error("CONDUCTOR_SERVER_URL is not set");
  process.exit(2);
}
const quiet = { info() {}, debug() {}, warn() {}, error() {} };

let release;
const released = new Promise((r) => { release = r; });
const client = await orkesConductorClient({ serverUrl, logger: quiet });
const manager = new TaskManager(client, [
  {
    taskDefName: "js_restart",
    concurrency: 4,
    execute: async (task) => {
      console.log(`RAN ${task.taskId}`);
      if (task.inputData.hold) {
        await released;
      }
      return { status: "COMPLETED", outputData: { by: "js" } };
    },
  },
], { logger: quiet, options: { pollInterval: 50, concurrency: 4, workerID: "js-restart" } });
manager.startPolling();
console.log("READY");

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line === "release") {
    release();
  } else if (line === "exit") {
    await manager.stopPolling();
    console.log("STOPPED");
    process.exit(0);
  }
}
