// The client against the real agent-service directly: gRPC-web over fetch (the default, as in a
// browser), and native gRPC over HTTP/2 through connect-node's transport.

import { after, describe as suite, test } from "node:test";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AutopilotClient, behaviour, followUps, listing } from "./behaviour.mjs";
import { env } from "./env.mjs";

suite("directly, gRPC-web", () => {
  behaviour(test, () => new AutopilotClient({ baseUrl: env.serviceUrl }));
  listing(test, () => new AutopilotClient({ baseUrl: env.serviceUrl }));
  followUps(test, () => new AutopilotClient({ baseUrl: env.serviceUrl }));
});

suite("directly, native gRPC", () => {
  // One HTTP/2 connection for the suite, closed at its end (an open one keeps node running).
  const sessionManager = new Http2SessionManager(env.serviceUrl);
  after(() => sessionManager.abort());
  const makeClient = () => {
    const transport = createGrpcTransport({ baseUrl: env.serviceUrl, httpVersion: "2", sessionManager });
    return new AutopilotClient({ transport });
  };
  behaviour(test, makeClient);
  listing(test, makeClient);
});
