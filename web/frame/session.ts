// The visitor session: starting it (POST /sessions, with the page's identity if any), keeping the
// tokens fresh without the visitor noticing (POST /sessions/refresh before expiry and after a
// 401), and remembering the refresh token and visitor id in localStorage, scoped by site id.
// Refreshes are serialised across tabs with the Web Locks API where available, because presenting
// a refresh token twice revokes the whole session.
import { Api, ApiError, type TokenSource } from "./api";
import type { Identity } from "../shared/bridge";
import type { SessionIssued } from "./types";
import { store } from "./store";

interface Stored {
  visitor_id?: string;
  refresh_token?: string;
  access_token?: string;
  expires_at?: number;
  ttl_s?: number;
}

export class Session implements TokenSource {
  visitorId = "";
  verified = false;
  identityRejected = false;
  /** Called with the new access token after each rotation (to re-authenticate open sockets). */
  onRotated: (token: string) => void = () => undefined;
  private access = "";
  private refreshToken = "";
  private expiresAt = 0;
  private ttl = 600;
  private inflight: Promise<void> | null = null;
  private timer = 0;

  constructor(
    private readonly api: Api,
    private readonly siteId: string,
    private readonly locale: string,
    private identity: Identity | null,
  ) {
    api.tokens = this;
  }

  private read(): Stored {
    return store.json<Stored>("session") || {};
  }

  /** Start or resume: reuse a fresh token another tab stored, else rotate, else a new session. */
  async start(): Promise<void> {
    const stored = this.read();
    this.visitorId = stored.visitor_id || "";
    this.refreshToken = stored.refresh_token || "";
    if (this.identity) return this.create();
    if (stored.access_token && (stored.expires_at || 0) - Date.now() > 20000) {
      this.adoptStored(stored);
      return;
    }
    return this.refreshNow();
  }

  async identify(identity: Identity): Promise<void> {
    this.identity = identity;
    await this.create();
    this.onRotated(this.access);
  }

  async token(): Promise<string> {
    if (!this.access || this.expiresAt - Date.now() < 5000) await this.refreshNow();
    return this.access;
  }

  current(): string {
    return this.access;
  }

  async expired(): Promise<void> {
    this.access = "";
    await this.refreshNow();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Rotate the refresh token once, however many callers ask at the same time. */
  refreshNow(): Promise<void> {
    let inflight = this.inflight;
    if (!inflight) {
      const run = (): Promise<void> => this.rotate();
      const locks = (navigator as Navigator & { locks?: LockManager }).locks;
      const work = locks ? locks.request(`frontdesk:${this.siteId}:refresh`, run).then(() => undefined) : run();
      inflight = this.inflight = work.finally(() => {
        this.inflight = null;
      });
    }
    return inflight;
  }

  private async rotate(): Promise<void> {
    const stored = this.read();
    const mine = this.refreshToken;
    if (stored.refresh_token && stored.refresh_token !== mine && stored.access_token && (stored.expires_at || 0) - Date.now() > 20000) {
      this.adoptStored(stored); // another tab rotated it already
      return;
    }
    const token = stored.refresh_token || mine;
    if (!token) return this.create();
    try {
      this.adopt(await this.api.post<SessionIssued>("/sessions/refresh", { refresh_token: token }, false));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return this.create();
      throw error;
    }
  }

  private async create(): Promise<void> {
    const body = { site_id: this.siteId, visitor_id: this.visitorId || undefined, identity: this.identity || undefined, locale: this.locale };
    try {
      this.adopt(await this.api.post<SessionIssued>("/sessions", body, false));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && this.identity) {
        this.identity = null; // a bad signature must not lock the visitor out: chat as a guest
        this.identityRejected = true;
        return this.create();
      }
      if (error instanceof ApiError && error.status === 404 && this.visitorId) {
        this.visitorId = ""; // the visitor is gone (site data deleted): start afresh
        return this.create();
      }
      throw error;
    }
  }

  private adopt(issued: SessionIssued): void {
    this.access = issued.access_token;
    this.refreshToken = issued.refresh_token;
    this.visitorId = issued.visitor_id;
    this.verified = issued.verified;
    this.ttl = issued.expires_in;
    this.expiresAt = Date.now() + issued.expires_in * 1000;
    store.setJson("session", {
      visitor_id: issued.visitor_id,
      refresh_token: issued.refresh_token,
      access_token: issued.access_token,
      expires_at: this.expiresAt,
      ttl_s: issued.expires_in,
    } satisfies Stored);
    this.schedule();
  }

  private adoptStored(stored: Stored): void {
    this.access = stored.access_token || "";
    this.refreshToken = stored.refresh_token || "";
    this.visitorId = stored.visitor_id || this.visitorId;
    this.expiresAt = stored.expires_at || 0;
    this.ttl = stored.ttl_s || this.ttl;
    this.schedule();
  }

  /** Refresh when a quarter of the lifetime is left (at least 10 s before expiry). */
  private schedule(): void {
    clearTimeout(this.timer);
    const margin = Math.max(10000, this.ttl * 250);
    const delay = Math.max(1000, this.expiresAt - Date.now() - margin);
    this.timer = window.setTimeout(() => {
      const before = this.access;
      this.refreshNow().then(
        () => {
          if (this.access !== before) this.onRotated(this.access);
        },
        () => {
          this.timer = window.setTimeout(() => this.schedule(), 5000);
        },
      );
    }, delay);
  }
}
