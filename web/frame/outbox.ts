// The visitor's unsent messages: kept in localStorage (so a reload or a closed laptop loses
// nothing) and sent one at a time, in order, each with its own client_id (the server stores a
// repeated client_id once). Network trouble and server errors are retried with exponential
// backoff and jitter; a rate limit waits for its Retry-After; invalid input marks the message
// failed (with a retry button) and the queue moves on.
import { ApiError } from "./api";
import { backoff, sleep, store, uuid } from "./store";

export type ItemState = "queued" | "sending" | "failed";

export interface Item {
  client_id: string;
  text: string;
  at: number;
  state: ItemState;
}

export interface OutboxHooks {
  /** Send one item; resolves when the server acknowledged it. */
  deliver(item: Item): Promise<void>;
  changed(item: Item, removed: boolean): void;
  /** The error holding the queue back (null when it moves again). */
  trouble(error: ApiError | null): void;
}

const MAX_SERVER_ATTEMPTS = 6;

export class Outbox {
  items: Item[];
  private running = false;

  constructor(private readonly hooks: OutboxHooks) {
    this.items = (store.json<Item[]>("outbox") || []).filter((i) => i && i.client_id && i.text);
    for (const item of this.items) if (item.state === "sending") item.state = "queued";
  }

  private save(): void {
    store.setJson("outbox", this.items);
  }

  add(text: string): Item {
    const item: Item = { client_id: uuid(), text, at: Date.now(), state: "queued" };
    this.items.push(item);
    this.save();
    this.hooks.changed(item, false);
    this.kick();
    return item;
  }

  retry(clientId: string): void {
    const item = this.items.find((i) => i.client_id === clientId);
    if (!item) return;
    item.state = "queued";
    this.save();
    this.hooks.changed(item, false);
    this.kick();
  }

  /** The server has the message (seen as an ack or as a stored message): forget it. */
  done(clientId: string): void {
    const index = this.items.findIndex((i) => i.client_id === clientId);
    if (index < 0) return;
    const [item] = this.items.splice(index, 1);
    this.save();
    this.hooks.changed(item, true);
  }

  kick(): void {
    if (!this.running) void this.run();
  }

  private set(item: Item, state: ItemState): void {
    item.state = state;
    this.save();
    this.hooks.changed(item, false);
  }

  private async run(): Promise<void> {
    this.running = true;
    let attempt = 0;
    let serverAttempts = 0;
    try {
      for (;;) {
        const item = this.items.find((i) => i.state !== "failed");
        if (!item) return;
        this.set(item, "sending");
        try {
          await this.hooks.deliver(item);
          this.done(item.client_id);
          this.hooks.trouble(null);
          attempt = serverAttempts = 0;
        } catch (error) {
          const problem = error instanceof ApiError ? error : new ApiError("server_error", String(error), 500);
          if (!this.items.includes(item)) continue; // acknowledged meanwhile
          this.hooks.trouble(problem);
          if (problem.code === "rate_limited") {
            this.set(item, "queued");
            await sleep(Math.max(1, problem.retryAfter) * 1000);
          } else if (!problem.retryable || (problem.status >= 500 && ++serverAttempts >= MAX_SERVER_ATTEMPTS)) {
            this.set(item, "failed");
            serverAttempts = 0;
          } else {
            this.set(item, "queued");
            await sleep(backoff(attempt++));
          }
        }
      }
    } finally {
      this.running = false;
    }
  }
}
