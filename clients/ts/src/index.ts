// The TypeScript client of the autopilot contract (autopilot.v1), for Node (>= 20) and browsers.
//
// Layout:
// - client.ts: `AutopilotClient`, the convenience layer (start a task and iterate its events,
//   resume from a seq, status, cancel, list the tasks) over connect's generated-service client.
// - describe.ts: one line of text per event, and a task's pull request in words, for people.
// - gen/: the protocol code generated from proto/ by protoc-gen-es (`make ts-client`); the
//   browser page (web/) imports it from here, so it is generated once.

export { AutopilotClient, DEFAULT_BASE_URL, type ClientOptions, type StartInit } from "./client.js";
export { describe, pullRequestText, stateName } from "./describe.js";
export * from "./gen/autopilot/v1/autopilot_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
