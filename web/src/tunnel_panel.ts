// The composer's choice of where the agent runs, and tunnel mode's panel: whether the user's
// machine is connected (asked of the edge every 3 s while "On my machine" is chosen) and the
// command that connects it. DOM glue.

import { api } from "./api.js";
import { $ } from "./dom.js";
import type { Mode } from "./tasks.js";

let tunnelPoll: number | undefined;

/** The mode the composer's radio buttons choose. */
export function selectedMode(): Mode {
  return document.querySelector<HTMLInputElement>('input[name="mode"]:checked')?.value === "tunnel" ? "tunnel" : "container";
}

/** Shows whether the user's machine is connected, polling while tunnel mode is chosen. */
export async function renderTunnel() {
  const tunnel = selectedMode() === "tunnel";
  $("tunnel-panel").hidden = !tunnel;
  window.clearTimeout(tunnelPoll);
  if (!tunnel) return;
  $("connect-command").textContent = `AUTOPILOT_TOKEN=<your API token> agent-service connect --edge ${location.origin}`;
  const { ok, body } = await api("/api/tunnel/status");
  const status = $("tunnel-status");
  status.dataset.connected = String(ok && body.connected === true);
  status.textContent = !ok
    ? "Could not ask whether your machine is connected."
    : body.connected
      ? `Your machine is connected (since ${new Date(body.connectedSinceMs).toLocaleTimeString()}).`
      : "Your machine is not connected.";
  tunnelPoll = window.setTimeout(() => void renderTunnel(), 3000);
}

