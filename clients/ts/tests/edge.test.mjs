// The client through the edge's gRPC-web passthrough under real `wrangler dev`, with an API
// token: the same behaviour as directly, and the edge's own refusals (no token, a bad token, no
// credits) arrive as gRPC statuses the client can branch on.

import assert from "node:assert/strict";
import { describe as suite, test } from "node:test";
import { AutopilotClient, behaviour } from "./behaviour.mjs";
import { Code } from "../dist/index.js";
import { env } from "./env.mjs";

suite("through the edge, with a token", () => {
  behaviour(test, () => new AutopilotClient({ baseUrl: env.edgeUrl, token: env.edgeToken }));
});

suite("the edge's refusals", () => {
  const start = { repositoryUrl: env.repository, prompt: "Hello" };

  test("without a token: Unauthenticated", { timeout: 60_000 }, async () => {
    const client = new AutopilotClient({ baseUrl: env.edgeUrl });
    await assert.rejects(client.start(start), (error) => {
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /Bearer/);
      return true;
    });
  });

  test("with an unknown token: Unauthenticated", { timeout: 60_000 }, async () => {
    const client = new AutopilotClient({ baseUrl: env.edgeUrl, token: "ap_not_a_real_token" });
    await assert.rejects(client.status(), (error) => error.code === Code.Unauthenticated);
  });

  test("without credits: ResourceExhausted", { timeout: 60_000 }, async () => {
    const client = new AutopilotClient({ baseUrl: env.edgeUrl, token: env.edgeTokenNoCredits });
    await assert.rejects(client.start(start), (error) => {
      assert.equal(error.code, Code.ResourceExhausted);
      assert.match(error.rawMessage, /insufficient credits/);
      return true;
    });
  });
});
