// HTTP calls to the widget API (`/api/widget/v1`): JSON in and out, the bearer token, one silent
// token refresh and retry on a 401, and errors as `ApiError` with the server's code and
// Retry-After. Network failures become `ApiError("network")`.
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 0,
    readonly retryAfter = 0,
  ) {
    super(message);
  }

  /** Worth trying again later (network, rate limit, server trouble), as opposed to a bad input. */
  get retryable(): boolean {
    return this.code === "network" || this.status === 429 || this.status >= 500 || this.status === 401;
  }
}

export interface TokenSource {
  token(): Promise<string>;
  /** The access token held now (possibly stale), for requests that cannot wait. */
  current(): string;
  expired(): Promise<void>;
}

export class Api {
  tokens: TokenSource | null = null;

  constructor(readonly base: string) {}

  async raw(path: string, init: RequestInit = {}, auth = true, retried = false): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.body && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
    if (auth && this.tokens) headers.set("Authorization", `Bearer ${await this.tokens.token()}`);
    let response: Response;
    try {
      response = await fetch(this.base + path, { ...init, headers, credentials: "omit" });
    } catch (error) {
      if ((error as Error).name === "AbortError") throw error;
      throw new ApiError("network", String(error));
    }
    if (response.status === 401 && auth && this.tokens && !retried) {
      await this.tokens.expired();
      return this.raw(path, init, auth, true);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  /** Fire-and-forget POST that survives the page going away (sent synchronously). */
  beacon(path: string, body: unknown): void {
    const token = this.tokens?.current();
    if (!token) return;
    const headers = { "Content-Type": "application/json", Authorization: `Bearer ${token}` };
    fetch(this.base + path, { method: "POST", body: JSON.stringify(body), headers, keepalive: true, credentials: "omit" }).catch(() => undefined);
  }

  async json<T>(path: string, init: RequestInit = {}, auth = true): Promise<T> {
    const response = await this.raw(path, init, auth);
    return (await response.json()) as T;
  }

  post<T>(path: string, body: unknown, auth = true): Promise<T> {
    return this.json<T>(path, { method: "POST", body: JSON.stringify(body) }, auth);
  }
}

export async function errorOf(response: Response): Promise<ApiError> {
  let code = response.status >= 500 ? "server_error" : "invalid_request";
  let message = response.statusText;
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    code = body.error?.code || code;
    message = body.error?.message || message;
  } catch {
    // not JSON: keep the status-based code
  }
  const retryAfter = Number(response.headers.get("Retry-After")) || 0;
  return new ApiError(code, message, response.status, retryAfter);
}
