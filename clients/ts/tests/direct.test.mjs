// The client against the real agent-service directly: gRPC-web over fetch (the default, as in a
// browser), and native gRPC over HTTP/2 through connect-node's transport.

import { describe as suite, test } from "node:test";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AutopilotClient, behaviour } from "./behaviour.mjs";
import { env } from "./env.mjs";

suite("directly, gRPC-web", () => {
  behaviour(test, () => new AutopilotClient({ baseUrl: env.serviceUrl }));
});

suite("directly, native gRPC", () => {
  behaviour(test, () => {
    const transport = createGrpcTransport({ baseUrl: env.serviceUrl, httpVersion: "2" });
    return new AutopilotClient({ transport });
  });
});
