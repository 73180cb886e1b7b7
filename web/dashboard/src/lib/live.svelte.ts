// The live event stream (/ws/events, PROTOCOL.md): one WebSocket for the whole dashboard,
// authenticated by the session cookie. Pages register handlers with `onEvent`; a reconnection
// resumes from the last offset seen (`since`), and when the server cannot replay everything
// missed (`recovered: false`) the `onResync` handlers run so that pages reload from the API.
// Notifications for the signed-in operator arrive on the same socket (`notification`,
// `notifications_read` frames).

import { root } from "./api";
import type { LiveEvent } from "./types";

type EventHandler = (event: LiveEvent, offset: number) => void;
type FrameHandler = (frame: Record<string, unknown>) => void;

const MAX_BACKOFF_MS = 15000;

class EventStream {
  status = $state<"connecting" | "live" | "offline">("connecting");
  private ws: WebSocket | null = null;
  private since: { epoch: string; offset: number } | null = null;
  private events = new Set<EventHandler>();
  private resyncs = new Set<() => void>();
  private frames = new Set<FrameHandler>();
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pinger: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private stopped = true;
  private signedOut: (() => void) | null = null;

  start(onSignedOut: () => void): void {
    this.signedOut = onSignedOut;
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.ws?.close(1000);
    this.ws = null;
    this.since = null;
    this.status = "connecting";
  }

  onEvent(handler: EventHandler): () => void {
    this.events.add(handler);
    return () => this.events.delete(handler);
  }

  onResync(handler: () => void): () => void {
    this.resyncs.add(handler);
    return () => this.resyncs.delete(handler);
  }

  onFrame(handler: FrameHandler): () => void {
    this.frames.add(handler);
    return () => this.frames.delete(handler);
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.pinger) clearInterval(this.pinger);
    this.timer = this.pinger = null;
  }

  private connect(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${root}/ws/events`);
    this.ws = ws;
    this.status = "connecting";
    ws.onmessage = (message) => {
      this.lastHeard = Date.now();
      let frame: Record<string, unknown>;
      try {
        frame = JSON.parse(String(message.data));
      } catch {
        return;
      }
      this.handle(ws, frame);
    };
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      this.status = "offline";
      if (this.stopped) return;
      if (close.code === 4401) {
        this.stopped = true;
        this.signedOut?.();
        return;
      }
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt++;
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  private handle(ws: WebSocket, frame: Record<string, unknown>): void {
    switch (frame.type) {
      case "ready": {
        const heartbeat = Number(frame.heartbeat_s) || 25;
        this.pinger = setInterval(() => {
          if (Date.now() - this.lastHeard > heartbeat * 2500) ws.close(4000, "no heartbeat");
          else ws.send(JSON.stringify({ type: "ping" }));
        }, heartbeat * 1000);
        ws.send(JSON.stringify({ type: "subscribe", types: ["*"], ...(this.since ? { since: this.since } : {}) }));
        break;
      }
      case "subscribed": {
        const resumed = this.since !== null;
        this.since = { epoch: String(frame.epoch), offset: Number(frame.offset) };
        this.attempt = 0;
        this.status = "live";
        if (resumed && frame.recovered === false) {
          for (const handler of this.resyncs) handler();
        }
        for (const item of (frame.events as (LiveEvent & { offset: number })[]) || []) {
          this.dispatch(item, item.offset);
        }
        break;
      }
      case "event": {
        const offset = Number(frame.offset);
        if (this.since) this.since.offset = Math.max(this.since.offset, offset);
        this.dispatch(frame.event as LiveEvent, offset);
        break;
      }
      default:
        for (const handler of this.frames) handler(frame);
    }
  }

  private dispatch(event: LiveEvent, offset: number): void {
    for (const handler of this.events) {
      try {
        handler(event, offset);
      } catch (error) {
        console.error("live event handler failed", error);
      }
    }
  }
}

export const live = new EventStream();

/** Calls `work` once things have been quiet for `wait_ms` (at most every `max_ms`). */
export function debounce(work: () => void, wait_ms: number, max_ms = wait_ms * 4): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let first = 0;
  return () => {
    const now = Date.now();
    if (timer === null) first = now;
    else clearTimeout(timer);
    const delay = now - first >= max_ms ? 0 : wait_ms;
    timer = setTimeout(() => {
      timer = null;
      work();
    }, delay);
  };
}
