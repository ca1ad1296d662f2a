// The typed convenience layer over the generated service: one method per thing a program does
// with a task. It stays thin on purpose: requests and replies are the generated messages, so
// nothing here can drift from the contract; it adds the transport choice (gRPC-web over fetch by
// default, which works in Node 20 and in browsers), the bearer token the edge wants, and `run`.

import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Autopilot,
  type CancelResponse,
  type Event,
  type ListTasksResponse,
  type StartRequestSchema,
  type StartResponse,
  type Task,
} from "./gen/autopilot/v1/autopilot_pb.js";

/** Where `make dev` runs the agent-service. */
export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";

/** What `start` and `run` take: a StartRequest's fields, e.g. `{ repositoryUrl, prompt, options: { maxTurns: 20 } }`. */
export type StartInit = MessageInitShape<typeof StartRequestSchema>;

export interface ClientOptions {
  /**
   * The agent-service (`http://127.0.0.1:8080`) or the edge (`https://<your worker>`); calls go to
   * `<baseUrl>/autopilot.v1.Autopilot/<Method>`. Default: 127.0.0.1:8080.
   */
  baseUrl?: string;
  /** An API token (`ap_...`): the edge needs one, sent as `Authorization: Bearer`. */
  token?: string;
  /**
   * Any connect transport instead of gRPC-web over fetch, e.g. connect-node's
   * `createGrpcTransport({ baseUrl, httpVersion: "2" })` for native gRPC to the agent-service.
   */
  transport?: Transport;
}

/** Adds `Authorization: Bearer <token>` to every call. */
function bearer(token: string): Interceptor {
  return (next) => async (request) => {
    request.header.set("Authorization", `Bearer ${token}`);
    return next(request);
  };
}

/**
 * A client of one agent-service, directly or through the edge. Failed calls reject with
 * connect's `ConnectError` (`code`: e.g. `Code.InvalidArgument`, `rawMessage`: the service's
 * message, which names the bad field).
 */
export class AutopilotClient {
  /** The generated client, for everything this layer leaves out. */
  readonly rpc: Client<typeof Autopilot>;

  constructor(options: ClientOptions = {}) {
    const baseUrl = options.baseUrl ?? DEFAULT_BASE_URL;
    const interceptors = options.token ? [bearer(options.token)] : [];
    const transport = options.transport ?? createGrpcWebTransport({ baseUrl, interceptors });
    this.rpc = createClient(Autopilot, transport);
  }

  /** Starts a task; answers its id and state at once. */
  start(request: StartInit, signal?: AbortSignal): Promise<StartResponse> {
    return this.rpc.start(request, { signal });
  }

  /** The task's snapshot; without an id, the running task or else the latest one. */
  async status(taskId = "", signal?: AbortSignal): Promise<Task> {
    const reply = await this.rpc.status({ taskId }, { signal });
    if (!reply.task) throw new Error("the service answered Status without a task");
    return reply.task;
  }

  /**
   * The task's events from `fromSeq` (to resume: the last seq seen + 1), replayed and then live,
   * as they arrive; ends after the final `taskFinished` event. Breaking out of the loop, or
   * `signal`, ends the call.
   */
  async *events(taskId = "", fromSeq = 1, signal?: AbortSignal): AsyncGenerator<Event> {
    for await (const reply of this.rpc.streamEvents({ taskId, fromSeq: BigInt(fromSeq) }, { signal })) {
      if (reply.event) yield reply.event;
    }
  }

  /** Starts a task and iterates its events to the end. */
  async *run(request: StartInit, signal?: AbortSignal): AsyncGenerator<Event> {
    const started = await this.start(request, signal);
    yield* this.events(started.taskId, 1, signal);
  }

  /** Stops the task (without an id, the running one); answers the state it ended in. */
  cancel(taskId = "", reason = "", signal?: AbortSignal): Promise<CancelResponse> {
    return this.rpc.cancel({ taskId, reason }, { signal });
  }

  /**
   * A page of the tasks, newest first: a summary of each (id, state, repository, title, times,
   * usage, delivered branch and commit, and through the edge its pull request). `pageSize` 1 to
   * 100, 0 for 20; pass the reply's `nextPageToken` as `pageToken` for the next page (empty on
   * the last page).
   */
  listTasks(pageSize = 0, pageToken = "", signal?: AbortSignal): Promise<ListTasksResponse> {
    return this.rpc.listTasks({ pageSize, pageToken }, { signal });
  }
}
