// The environments panel: the user's environments (GET /api/environments) and an editor for one
// (save, delete, reset its prepared workspaces), shown in the right pane in place of the composer
// or a task. DOM glue; what the fields mean is environment_form.ts.

import { api, errorText } from "./api.js";
import { $ } from "./dom.js";
import { environmentBody, environmentFields, type EnvironmentFields, type EnvironmentView } from "./environment_form.js";

const FIELDS: (keyof EnvironmentFields)[] = ["repositories", "setupScript", "maintenanceScript", "variables", "secrets", "setupTimeoutSeconds"];
const input = (field: string) => $(`env-${field}`) as HTMLInputElement | HTMLTextAreaElement;

/** Shows the panel with the user's environments; `hideOthers` hides the composer and the task. */
async function showEnvironments(hideOthers: () => void): Promise<void> {
  hideOthers();
  $("environments").hidden = false;
  document.title = "Environments · Autopilot";
  await refreshList();
  edit(undefined);
  $("environments-title").focus();
}

/** Hides the panel. */
export function hideEnvironments(): void {
  $("environments").hidden = true;
}

/** The composer's environment choice: "Automatic", then each environment by name. */
export async function offerEnvironments(): Promise<void> {
  const { ok, body } = await api("/api/environments");
  if (ok) offer((body.environments ?? []) as EnvironmentView[]);
}

function offer(environments: EnvironmentView[]): void {
  const select = $("environment") as HTMLSelectElement;
  const chosen = select.value;
  const options = environments.map((environment) => new Option(environment.name, environment.name));
  select.replaceChildren(new Option("Automatic", ""), ...options);
  select.value = environments.some((e) => e.name === chosen) ? chosen : "";
}

async function refreshList(select?: string): Promise<void> {
  const { ok, body, status } = await api("/api/environments");
  const list = $("environment-list");
  if (!ok) {
    say(errorText(body, status), true);
    return;
  }
  const environments = (body.environments ?? []) as EnvironmentView[];
  offer(environments);
  list.replaceChildren(
    ...environments.map((environment) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = environment.name;
      button.setAttribute("aria-current", String(environment.name === select));
      button.addEventListener("click", () => edit(environment));
      item.append(button);
      return item;
    }),
  );
  $("environment-empty").hidden = environments.length > 0;
}

/** Fills the editor with `environment` (undefined: a new one). */
function edit(environment: EnvironmentView | undefined): void {
  const name = $("env-name") as HTMLInputElement;
  name.value = environment?.name ?? "";
  name.readOnly = environment !== undefined;
  const fields = environment ? environmentFields(environment) : undefined;
  for (const field of FIELDS) input(field).value = fields?.[field] ?? "";
  $("env-delete").hidden = !environment;
  $("env-reset").hidden = !environment;
  say(environment ? `Revision ${environment.revision}.` : "A new environment.");
}

async function save(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const name = ($("env-name") as HTMLInputElement).value.trim();
  if (name === "") return say("Name it first.", true);
  const fields = Object.fromEntries(FIELDS.map((field) => [field, input(field).value])) as unknown as EnvironmentFields;
  const { body, error } = environmentBody(fields);
  if (error) return say(error, true);
  const reply = await api(`/api/environments/${encodeURIComponent(name)}`, { method: "PUT", body: JSON.stringify(body) });
  if (!reply.ok) return say(errorText(reply.body, reply.status), true);
  await refreshList(name);
  edit(reply.body as EnvironmentView);
  say(`Saved ${name} (revision ${reply.body.revision}): the next task on its repositories runs its setup.`);
}

async function remove(): Promise<void> {
  const name = ($("env-name") as HTMLInputElement).value;
  const reply = await api(`/api/environments/${encodeURIComponent(name)}`, { method: "DELETE" });
  if (!reply.ok) return say(errorText(reply.body, reply.status), true);
  await refreshList();
  edit(undefined);
  say(`Deleted ${name}.`);
}

async function reset(): Promise<void> {
  const name = ($("env-name") as HTMLInputElement).value;
  const reply = await api(`/api/environments/${encodeURIComponent(name)}/cache`, { method: "DELETE" });
  if (!reply.ok) return say(errorText(reply.body, reply.status), true);
  say(`The next task with ${name} runs its setup on a fresh clone (revision ${reply.body.revision}).`);
}

function say(text: string, isError = false): void {
  const status = $("environment-status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

/** Wires the panel's controls (once); "Environments" calls `hideOthers` (which closes the open
 * task and hides the composer), then shows the panel. */
export function initEnvironments(hideOthers: () => void): void {
  $("show-environments").addEventListener("click", () => void showEnvironments(hideOthers));
  $("environment-form").addEventListener("submit", (e) => void save(e as SubmitEvent));
  $("env-new").addEventListener("click", () => edit(undefined));
  $("env-delete").addEventListener("click", () => void remove());
  $("env-reset").addEventListener("click", () => void reset());
}
