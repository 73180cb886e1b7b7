// localStorage scoped by site id (`frontdesk:<site_id>:<key>`), falling back to memory where
// storage is blocked (some browsers block it in third-party frames).
const memory = new Map<string, string>();
let prefix = "frontdesk::";

function backend(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

export const store = {
  scope(siteId: string): void {
    prefix = `frontdesk:${siteId}:`;
  },
  get(key: string): string | null {
    try {
      const storage = backend();
      if (storage) return storage.getItem(prefix + key);
    } catch {
      // fall through to memory
    }
    return memory.get(prefix + key) ?? null;
  },
  set(key: string, value: string | null): void {
    memory.delete(prefix + key);
    try {
      const storage = backend();
      if (storage) {
        if (value === null) storage.removeItem(prefix + key);
        else storage.setItem(prefix + key, value);
        return;
      }
    } catch {
      // quota or blocked: keep it in memory
    }
    if (value !== null) memory.set(prefix + key, value);
  },
  json<T>(key: string): T | null {
    try {
      return JSON.parse(this.get(key) || "null") as T | null;
    } catch {
      return null;
    }
  },
  setJson(key: string, value: unknown): void {
    this.set(key, JSON.stringify(value));
  },
};

/** A random client id (crypto.randomUUID needs a secure context; this does not). */
export function uuid(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Exponential backoff with full jitter: a random delay in [base/2, base·2^attempt], capped. */
export function backoff(attempt: number, base = 500, cap = 30000): number {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
