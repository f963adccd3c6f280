// The REST API of nbflow's Jupyter server extension (/nbflow/api/...). ServerConnection adds the
// Jupyter token or the XSRF header, so every call is authenticated like the rest of JupyterLab.
import { ServerConnection } from "@jupyterlab/services";

/** An answer that is not 2xx: the server's `{"message": ...}`, the status code and the whole body. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: Json = null,
  ) {
    super(message);
  }
}

/** One row of `GET /nbflow/api/runs` (nbflow.views.run_summary). */
export interface RunSummary {
  id: string;
  workflow: string;
  version: number;
  status: string;
  interrupted: boolean;
  owner: { host: string | null; pid: number | null; alive: boolean; text: string };
  created: string | null;
  updated: string | null;
  finished: string | null;
  forked_from: string | null;
  paused: number;
  failed: number;
  progress: { done: number; total: number };
}

export type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export class Api {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  /** `path` below `/nbflow/api/` (with its query string); resolves to the decoded JSON body. */
  async request(path: string, init: RequestInit = {}): Promise<Json> {
    const url = this.settings.baseUrl.replace(/\/?$/, "/") + "nbflow/api/" + path;
    let resp: Response;
    try {
      resp = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (e) {
      throw new ApiError(`the Jupyter server did not answer: ${(e as Error).message || e}`, 0);
    }
    const text = await resp.text();
    let body: Json = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = { message: text.slice(0, 500) };
    }
    if (!resp.ok) {
      const message = body && typeof body.message === "string" ? body.message : `${resp.status} ${resp.statusText}`;
      throw new ApiError(message, resp.status, body);
    }
    return body;
  }

  get(path: string): Promise<Json> {
    return this.request(path, { method: "GET" });
  }

  post(path: string, body: Json): Promise<Json> {
    return this.request(path, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" },
    });
  }

  delete(path: string): Promise<Json> {
    return this.request(path, { method: "DELETE" });
  }

  runs(limit = 200): Promise<RunSummary[]> {
    return this.get(`runs?limit=${limit}`);
  }
}

/** `a=1&b=x` from an object, skipping null/undefined/"" values. */
export function query(args: Record<string, string | number | null | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(args)) {
    if (v === null || v === undefined || v === "") continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.join("&");
}
