// The REST client: every call to /api/v1 goes through `api()`. It sends the session cookie
// (same origin), the CSRF token on unsafe methods, and turns error bodies
// ({"error": {"code", "message"}}) into ApiError. The CSRF token lives in memory after sign-in;
// after a reload it is read back from the readable `__Host-fd_csrf` cookie the server set with it.

export const CSRF_COOKIE = "__Host-fd_csrf";

/** The path FrontDesk is served under ("" or e.g. "/desk"), from where this bundle was loaded. */
export const root: string = (() => {
  const path = new URL(import.meta.url).pathname;
  const at = path.lastIndexOf("/dashboard/assets/");
  return at >= 0 ? path.slice(0, at) : "";
})();

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;
let onSignedOut: (() => void) | null = null;

export function setCsrf(token: string | null): void {
  csrfToken = token;
}

export function whenSignedOut(handler: () => void): void {
  onSignedOut = handler;
}

function csrfFromCookie(): string | null {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(value.join("="));
  }
  return null;
}

export function csrf(): string | null {
  return csrfToken ?? csrfFromCookie();
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** A raw body (a file's bytes) instead of JSON. */
export class RawBody {
  constructor(
    readonly data: Blob,
    readonly type: string,
  ) {}
}

export async function api<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body instanceof RawBody) headers["Content-Type"] = body.type || "application/octet-stream";
  else if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method)) {
    const token = csrf();
    if (token) headers["X-CSRF-Token"] = token;
  }
  let response: Response;
  try {
    response = await fetch(`${root}/api/v1${withQuery(path, query)}`, {
      method,
      headers,
      body: body instanceof RawBody ? body.data : body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached. Check the connection and try again.");
  }
  if (response.status === 204) return undefined as T;
  let parsed: unknown = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const error = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
    const failure = new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? `The server answered ${response.status}.`,
    );
    if (response.status === 401 && !path.startsWith("/auth/login")) onSignedOut?.();
    throw failure;
  }
  return parsed as T;
}

export const get = <T>(path: string, query?: Query): Promise<T> => api<T>("GET", path, undefined, query);
export const post = <T>(path: string, body?: unknown): Promise<T> => api<T>("POST", path, body ?? {});
export const patch = <T>(path: string, body: unknown): Promise<T> => api<T>("PATCH", path, body);
export const del = (path: string): Promise<void> => api<void>("DELETE", path);

export function message(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}
