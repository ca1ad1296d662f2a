// What the Rust harness (tests/clients.rs) passes: the real services it started for these tests.

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: these tests run against services that tests/clients.rs starts; ` +
        "run `cargo test -p autopilot-tests --test clients` (or `make test-clients`)",
    );
  }
  return value;
}

export const env = {
  get serviceUrl() { return required("AUTOPILOT_SERVICE_URL"); },
  get edgeUrl() { return required("AUTOPILOT_EDGE_URL"); },
  get edgeToken() { return required("AUTOPILOT_EDGE_TOKEN"); },
  get edgeTokenNoCredits() { return required("AUTOPILOT_EDGE_TOKEN_NO_CREDITS"); },
  get repository() { return required("AUTOPILOT_TEST_REPOSITORY"); },
  get mainCommit() { return required("AUTOPILOT_TEST_MAIN_COMMIT"); },
};

/** Collects an async iterable. */
export async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}
