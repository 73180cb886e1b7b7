// Widget analytics and error reports: events are queued and sent in batches of at most 50 to
// POST /api/widget/v1/events, at most one batch every few seconds, and at most a fixed number of
// events per minute (the rest are dropped, never retried forever). Uncaught errors and rejected
// promises of the frame become `error.reported` events, each distinct error once.
import { type Api, ApiError } from "./api";

export interface WidgetEvent {
  type: string;
  at: number;
  data: Record<string, unknown>;
}

const BATCH = 50;
const FLUSH_MS = 4000;
const PER_MINUTE = 120;
const MAX_QUEUE = 200;
const MAX_ERRORS = 10;

export class Analytics {
  private queue: WidgetEvent[] = [];
  private timer = 0;
  private sending = false;
  private sentThisMinute = 0;
  private minuteStart = Date.now();
  private errorsSeen = new Set<string>();
  ready = false;

  constructor(private readonly api: Api) {
    addEventListener("error", (event) => this.error(event.error || event.message, "window.onerror"));
    addEventListener("unhandledrejection", (event) => this.error(event.reason, "unhandledrejection"));
    addEventListener("pagehide", () => void this.flush(true));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") void this.flush(true);
    });
  }

  track(type: string, data: Record<string, unknown> = {}): void {
    if (Date.now() - this.minuteStart > 60000) {
      this.minuteStart = Date.now();
      this.sentThisMinute = 0;
    }
    if (this.sentThisMinute >= PER_MINUTE || this.queue.length >= MAX_QUEUE) return;
    this.sentThisMinute++;
    this.queue.push({ type, at: Date.now() / 1000, data });
    this.schedule();
  }

  error(reason: unknown, context: string, extra: Record<string, unknown> = {}): void {
    const err = reason instanceof Error ? reason : new Error(String(reason));
    const key = `${err.message}|${context}`;
    if (this.errorsSeen.has(key) || this.errorsSeen.size >= MAX_ERRORS) return;
    this.errorsSeen.add(key);
    this.track("error.reported", {
      message: err.message.slice(0, 500),
      stack: (err.stack || "").slice(0, 2000),
      user_agent: navigator.userAgent.slice(0, 300),
      context,
      ...extra,
    });
  }

  start(): void {
    this.ready = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.ready && !this.timer && this.queue.length) {
      this.timer = window.setTimeout(() => {
        this.timer = 0;
        void this.flush(false);
      }, FLUSH_MS);
    }
  }

  async flush(leaving: boolean): Promise<void> {
    if (!this.ready || !this.queue.length) return;
    if (leaving) {
      while (this.queue.length) this.api.beacon("/events", { events: this.queue.splice(0, BATCH) });
      return;
    }
    if (this.sending) return;
    const batch = this.queue.splice(0, BATCH);
    this.sending = true;
    try {
      await this.api.raw("/events", { method: "POST", body: JSON.stringify({ events: batch }) });
    } catch (error) {
      const retry = !(error instanceof ApiError) || error.retryable;
      if (retry) this.queue.unshift(...batch.slice(0, MAX_QUEUE - this.queue.length));
    } finally {
      this.sending = false;
      this.schedule();
    }
  }
}
