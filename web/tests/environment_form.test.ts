import assert from "node:assert/strict";
import { test } from "node:test";
import { environmentBody, environmentFields } from "../src/environment_form.js";
import { validateStartForm } from "../src/validate.js";

const fields = {
  repositories: " https://github.com/o/r \n\n",
  setupScript: "npm ci",
  maintenanceScript: "",
  variables: "NODE_ENV=test\nURL=https://x/?a=b",
  secrets: "NPM_TOKEN=s3cret\nKEPT",
  setupTimeoutSeconds: "",
};

test("the editor's lines become the PUT body: values set, bare secret names kept", () => {
  assert.deepEqual(environmentBody(fields).body, {
    repositories: ["https://github.com/o/r"],
    setupScript: "npm ci",
    maintenanceScript: "",
    variables: { NODE_ENV: "test", URL: "https://x/?a=b" },
    secrets: { NPM_TOKEN: "s3cret", KEPT: null },
  });
  assert.equal(environmentBody({ ...fields, variables: "JUST_A_NAME" }).error, 'Variables: "JUST_A_NAME" is not NAME=value.');
  assert.equal(environmentBody({ ...fields, setupTimeoutSeconds: "ten" }).error, "Time limit: whole seconds.");
  assert.equal((environmentBody({ ...fields, setupTimeoutSeconds: "90" }).body as any).setupTimeoutSeconds, 90);
});

test("a stored environment fills the editor with its secrets by name, kept unless changed", () => {
  const shown = environmentFields({
    name: "web", repositories: ["https://github.com/o/r"], setupScript: "npm ci", maintenanceScript: "", variables: { A: "1" },
    secrets: ["NPM_TOKEN"], setupTimeoutSeconds: 600, revision: 2,
  });
  assert.deepEqual(shown, { repositories: "https://github.com/o/r", setupScript: "npm ci", maintenanceScript: "", variables: "A=1", secrets: "NPM_TOKEN", setupTimeoutSeconds: "600" });
  assert.deepEqual((environmentBody(shown).body as any).secrets, { NPM_TOKEN: null }, "saved again unchanged, the secret is kept");
});

test("a chosen environment is named in the start request; Automatic names none", () => {
  const form = { repositoryUrl: "https://github.com/o/r", gitRef: "", prompt: "fix it", model: "", maxTurns: "", maxBudgetUsd: "" };
  assert.equal(validateStartForm({ ...form, environment: "" }).request?.environment, undefined);
  assert.equal(validateStartForm({ ...form, environment: "web" }).request?.environment, "web");
});
