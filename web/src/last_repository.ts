// The New task composer remembers the last repository (and ref) a task was started on, in this
// browser, so the next task needs only a prompt. What it keeps is parsed leniently: anything
// unexpected is forgotten, not trusted. Pure apart from the storage it is handed.

const KEY = "autopilot.lastRepository";

export interface LastRepository {
  repositoryUrl: string;
  gitRef: string;
}

/** What `storage` remembers, if anything sensible. */
export function recallRepository(storage: Pick<Storage, "getItem">): LastRepository | undefined {
  try {
    const value = JSON.parse(storage.getItem(KEY) ?? "null");
    if (typeof value?.repositoryUrl === "string" && value.repositoryUrl !== "") {
      return { repositoryUrl: value.repositoryUrl, gitRef: typeof value.gitRef === "string" ? value.gitRef : "" };
    }
  } catch {
    // Not ours, or from an older page: forgotten.
  }
  return undefined;
}

/** Remembers the repository a task just started on. */
export function rememberRepository(storage: Pick<Storage, "setItem">, last: LastRepository) {
  storage.setItem(KEY, JSON.stringify(last));
}
