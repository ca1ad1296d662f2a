// Checks the start form as the contract does (validate.rs in the agent-service), so most mistakes
// are caught before a request is sent. The service stays the authority: its INVALID_ARGUMENT
// messages are shown next to the field they name.

export interface StartForm {
  repositoryUrl: string;
  gitRef: string;
  prompt: string;
  model: string;
  maxTurns: string;
  maxBudgetUsd: string;
  /** Open a pull request for the task's branch (GitHub repositories; pushes the branch). */
  pullRequest?: boolean;
  /** The environment to run in; empty: the first that applies to the repository. */
  environment?: string;
}

export type FieldErrors = Partial<Record<Exclude<keyof StartForm, "pullRequest" | "environment">, string>>;

/** The StartRequest in proto3 JSON, as POST /api/container/start takes it. */
export interface StartRequestJson {
  repositoryUrl: string;
  gitRef?: string;
  prompt: string;
  options?: { model?: string; maxTurns?: number; maxBudgetUsd?: number };
  delivery?: { push: boolean; pullRequest?: { open: boolean } };
  /** An environment's name (the edge fills in the rest). */
  environment?: string;
}

export const MAX_PROMPT_BYTES = 100_000;
export const MAX_URL_BYTES = 2048;

const bytes = (text: string) => new TextEncoder().encode(text).length;

function urlError(url: string): string | undefined {
  if (url === "") return "Enter the repository's URL.";
  if (bytes(url) > MAX_URL_BYTES) return `At most ${MAX_URL_BYTES} bytes.`;
  if (/[\s\u0000-\u001f]/.test(url)) return "No spaces or control characters.";
  if (url.startsWith("-")) return "A URL cannot start with '-'.";
  if (url.includes("::") && !url.includes("://")) return "git's transport::address form is not allowed.";
  // http:// only reaches a GitHub the edge is configured for (a local one, in development).
  if (/^https?:\/\/[^/\s]+/i.test(url) || /^ssh:\/\/[^/\s]+/i.test(url)) return undefined;
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^-]/.test(url)) return undefined;
  if (/^file:\/\/\//.test(url) || url.startsWith("/")) return undefined; // only where the service allows it
  return "Use https://, ssh:// or user@host:path.";
}

function refError(ref: string): string | undefined {
  if (ref === "") return undefined;
  if (ref.length > 256) return "At most 256 characters.";
  if (ref.startsWith("-") || ref.startsWith("/") || ref.endsWith("/") || ref.endsWith(".") || ref.endsWith(".lock"))
    return "Not a branch, tag or commit name git accepts.";
  if (!/^[A-Za-z0-9._/+-]+$/.test(ref) || ref.includes("..") || ref.includes("//"))
    return "Not a branch, tag or commit name git accepts.";
  return undefined;
}

/** Validates the form; answers either the request to send or an error per bad field. */
export function validateStartForm(form: StartForm): { errors: FieldErrors; request?: StartRequestJson } {
  const errors: FieldErrors = {};
  const url = form.repositoryUrl.trim();
  const urlProblem = urlError(url);
  if (urlProblem) errors.repositoryUrl = urlProblem;
  const ref = form.gitRef.trim();
  const refProblem = refError(ref);
  if (refProblem) errors.gitRef = refProblem;
  if (form.prompt.trim() === "") errors.prompt = "Tell the agent what to do.";
  else if (bytes(form.prompt) > MAX_PROMPT_BYTES) errors.prompt = `At most ${MAX_PROMPT_BYTES} bytes.`;
  const model = form.model.trim();
  if (model.length > 128) errors.model = "At most 128 characters.";
  else if (model !== "" && !/^[A-Za-z0-9._:/@\[\]-]+$/.test(model)) errors.model = "Letters, digits and . _ - : / @ [ ] only.";
  const turns = form.maxTurns.trim();
  if (turns !== "" && !(/^\d+$/.test(turns) && Number(turns) <= 1000)) errors.maxTurns = "A whole number from 0 to 1000.";
  const budget = form.maxBudgetUsd.trim();
  if (budget !== "" && !(/^\d+(\.\d+)?$/.test(budget) && Number(budget) <= 1000)) errors.maxBudgetUsd = "Dollars from 0 to 1000.";
  if (Object.keys(errors).length > 0) return { errors };

  const options: StartRequestJson["options"] = {};
  if (model) options.model = model;
  if (turns && Number(turns) > 0) options.maxTurns = Number(turns);
  if (budget && Number(budget) > 0) options.maxBudgetUsd = Number(budget);
  const request: StartRequestJson = { repositoryUrl: url, prompt: form.prompt };
  if (ref) request.gitRef = ref;
  if (Object.keys(options).length > 0) request.options = options;
  if (form.pullRequest) request.delivery = { push: true, pullRequest: { open: true } };
  if (form.environment) request.environment = form.environment;
  return { errors, request };
}

/** The form field a service error names ("repository_url is ..." -> "repositoryUrl"). */
export function fieldOfServiceError(message: string): keyof StartForm | undefined {
  const fields: Record<string, keyof StartForm> = {
    repository_url: "repositoryUrl",
    git_ref: "gitRef",
    prompt: "prompt",
    "options.model": "model",
    "options.max_turns": "maxTurns",
    "options.max_budget_usd": "maxBudgetUsd",
  };
  const first = message.split(" ")[0];
  return fields[first];
}
