// What the environment editor's fields mean, as the edge's PUT /api/environments/{name} takes it:
// repositories one per line; variables as NAME=value lines; secrets as NAME=value lines (set)
// or a bare NAME (keep the stored value, which the page never sees); a name left out is removed.
// Pure, so it is unit-tested.

export interface EnvironmentFields {
  repositories: string;
  setupScript: string;
  maintenanceScript: string;
  variables: string;
  secrets: string;
  setupTimeoutSeconds: string;
}

/** An environment as the edge shows it (secrets by name only). */
export interface EnvironmentView {
  name: string;
  repositories: string[];
  setupScript: string;
  maintenanceScript: string;
  variables: Record<string, string>;
  secrets: string[];
  setupTimeoutSeconds: number;
  revision: number;
}

/** The body of a PUT, or what is wrong with the fields (the edge checks the rest). */
export function environmentBody(fields: EnvironmentFields): { body?: object; error?: string } {
  const variables: Record<string, string> = {};
  for (const [line, name, value] of namedLines(fields.variables)) {
    if (value === undefined) return { error: `Variables: "${line}" is not NAME=value.` };
    variables[name] = value;
  }
  const secrets: Record<string, string | null> = {};
  for (const [, name, value] of namedLines(fields.secrets)) secrets[name] = value ?? null;
  const seconds = fields.setupTimeoutSeconds.trim();
  if (seconds !== "" && !/^\d+$/.test(seconds)) return { error: "Time limit: whole seconds." };
  const repositories = fields.repositories.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const body: Record<string, unknown> = { repositories, setupScript: fields.setupScript, maintenanceScript: fields.maintenanceScript, variables, secrets };
  if (seconds !== "") body.setupTimeoutSeconds = Number(seconds);
  return { body };
}

/** The fields showing `environment` (its secrets by name: kept unless changed). */
export function environmentFields(environment: EnvironmentView): EnvironmentFields {
  return {
    repositories: environment.repositories.join("\n"),
    setupScript: environment.setupScript,
    maintenanceScript: environment.maintenanceScript,
    variables: Object.entries(environment.variables).map(([name, value]) => `${name}=${value}`).join("\n"),
    secrets: environment.secrets.join("\n"),
    setupTimeoutSeconds: String(environment.setupTimeoutSeconds),
  };
}

/** Each non-empty line as [line, name, value] (value undefined for a bare NAME). */
function namedLines(text: string): [string, string, string | undefined][] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => {
      const at = line.indexOf("=");
      return at < 0 ? [line, line, undefined] : [line, line.slice(0, at).trim(), line.slice(at + 1)];
    });
}
