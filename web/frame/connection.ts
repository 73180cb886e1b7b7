// The live connection to one conversation: /ws/chat (auth, join with after_seq = last seq seen,
// send → ack, ping/pong, re-auth on token rotation) with reconnection and resume, and the SSE
// fallback (GET …/stream to receive, POST …/messages to send) when WebSockets fail while HTTP
// works. Messages are delivered once each, in seq order; everything else (deltas, typing) is
// passed through. The browser's offline/online events pause and resume it.
import { Api, ApiError } from "./api";
import type { Session } from "./session";
import { backoff } from "./store";
import type { Message, ServerFrame, Status } from "./types";

export interface ConnectionEvents {
  status(status: Status): void;
  frame(frame: ServerFrame): void;
  lost(conversationId: string): void;
  blocked(): void;
}

export interface Ack {
  message_id: string;
  seq: number;
}

interface Pending {
  resolve(ack: Ack): void;
  reject(error: ApiError): void;
  timer: number;
}

const STATUS_BY_CODE: Record<string, number> = { rate_limited: 429, invalid_request: 422, payload_too_large: 413, not_found: 404, origin_not_allowed: 403, unauthorized: 401, token_expired: 401 };

export class Connection {
  mode: "ws" | "sse" = "ws";
  conversationId: string | null = null;
  lastSeq = 0;
  isOnline = false;
  private ws: WebSocket | null = null;
  private sse: AbortController | null = null;
  private attempts = 0;
  private wsFailures = 0;
  private timer = 0;
  private pingTimer = 0;
  private lastPong = 0;
  private stopped = false;
  private offline = !navigator.onLine;
  private waiters: Array<() => void> = [];
  private pending = new Map<string, Pending>();

  constructor(
    private readonly api: Api,
    private readonly session: Session,
    private readonly wsUrl: string,
    private readonly events: ConnectionEvents,
  ) {
    addEventListener("offline", this.goOffline);
    addEventListener("online", this.goOnline);
    session.onRotated = (token) => this.wsSend({ type: "auth", access_token: token });
  }

  start(): void {
    if (this.offline) this.events.status("offline");
    else void this.open();
  }

  stop(): void {
    this.stopped = true;
    this.teardown();
    removeEventListener("offline", this.goOffline);
    removeEventListener("online", this.goOnline);
  }

  /** Follow a conversation from `afterSeq` (joins it on the open connection). */
  setConversation(id: string, afterSeq = 0): void {
    this.conversationId = id;
    this.lastSeq = afterSeq;
    if (this.mode === "ws" && this.ws?.readyState === WebSocket.OPEN && this.isOnline) {
      this.wsSend({ type: "join", conversation_id: id, after_seq: afterSeq });
    } else if (this.mode === "sse" && !this.offline) {
      this.teardown();
      void this.open();
    }
  }

  whenOnline(): Promise<void> {
    return this.isOnline ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }

  async send(clientId: string, text: string): Promise<Ack> {
    const conversationId = this.conversationId;
    if (!this.isOnline || !conversationId) throw new ApiError("network", "offline");
    if (this.mode === "sse") {
      const body = { client_id: clientId, text };
      const accepted = await this.api.post<{ message: Message }>(`/conversations/${conversationId}/messages`, body);
      return { message_id: accepted.message.id, seq: accepted.message.seq };
    }
    return new Promise<Ack>((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(clientId);
        reject(new ApiError("network", "no ack"));
      }, 20000);
      this.pending.set(clientId, { resolve, reject, timer });
      if (!this.wsSend({ type: "send", conversation_id: conversationId, client_id: clientId, text })) {
        this.settle(clientId, new ApiError("network", "socket closed"));
      }
    });
  }

  typing(): void {
    if (this.conversationId && this.isOnline) this.wsSend({ type: "typing", conversation_id: this.conversationId });
  }

  private readonly goOffline = (): void => {
    this.offline = true;
    this.teardown();
    this.events.status("offline");
  };

  private readonly goOnline = (): void => {
    if (!this.offline) return;
    this.offline = false;
    this.attempts = 0;
    clearTimeout(this.timer);
    void this.open();
  };

  private wsSend(frame: Record<string, unknown>): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  private teardown(): void {
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    this.isOnline = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onopen = null;
      ws.close();
    }
    this.sse?.abort();
    this.sse = null;
    for (const id of Array.from(this.pending.keys())) this.settle(id, new ApiError("network", "disconnected"));
  }

  private settle(clientId: string, outcome: Ack | ApiError): void {
    const pending = this.pending.get(clientId);
    if (!pending) return;
    this.pending.delete(clientId);
    clearTimeout(pending.timer);
    if (outcome instanceof ApiError) pending.reject(outcome);
    else pending.resolve(outcome);
  }

  private online(): void {
    this.isOnline = true;
    this.attempts = 0;
    this.events.status("online");
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((resolve) => resolve());
  }

  private retry(delay = backoff(this.attempts++)): void {
    this.isOnline = false;
    if (this.stopped || this.offline) return;
    this.events.status("reconnecting");
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.open(), delay);
  }

  private async open(): Promise<void> {
    if (this.stopped || this.offline) return;
    this.events.status(this.attempts ? "reconnecting" : "connecting");
    if (this.mode === "sse") return this.openSse();
    let token: string;
    try {
      token = await this.session.token();
    } catch (error) {
      return this.failed(error);
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.wsUrl);
    } catch {
      return this.wsFailed();
    }
    this.ws = ws;
    let ready = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", access_token: token }));
    ws.onmessage = (event) => {
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(event.data)) as ServerFrame;
      } catch {
        return;
      }
      if (frame.type === "ready") {
        ready = true;
        this.wsFailures = 0;
        this.heartbeat(frame.heartbeat_s);
        if (this.conversationId) this.wsSend({ type: "join", conversation_id: this.conversationId, after_seq: this.lastSeq });
        else this.online();
      } else this.handle(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      this.isOnline = false;
      for (const id of Array.from(this.pending.keys())) this.settle(id, new ApiError("network", "disconnected"));
      void this.closed(event.code, ready);
    };
  }

  private heartbeat(seconds: number): void {
    clearInterval(this.pingTimer);
    this.lastPong = Date.now();
    this.pingTimer = window.setInterval(() => {
      if (Date.now() - this.lastPong > 2 * seconds * 1000) this.ws?.close();
      else this.wsSend({ type: "ping" });
    }, seconds * 1000);
  }

  private async closed(code: number, wasReady: boolean): Promise<void> {
    if (this.stopped || this.offline) return;
    if (code === 4403) return this.events.blocked();
    if (code === 4401) {
      try {
        await this.session.expired();
      } catch (error) {
        return this.failed(error);
      }
      return this.retry(100);
    }
    if (!wasReady) return this.wsFailed();
    this.retry(code === 4429 ? backoff(this.attempts++ + 4) : undefined);
  }

  /** Two WebSocket failures in a row while HTTP works: the network blocks WebSockets. */
  private async wsFailed(): Promise<void> {
    if (++this.wsFailures >= 2) {
      try {
        await this.api.raw("/conversations");
        this.mode = "sse";
        return this.retry(0);
      } catch {
        // the server is unreachable too: keep trying WebSockets
      }
    }
    this.retry();
  }

  private failed(error: unknown): void {
    if (error instanceof ApiError && error.code === "origin_not_allowed") return this.events.blocked();
    this.retry();
  }

  private handle(frame: ServerFrame): void {
    switch (frame.type) {
      case "joined":
        if (frame.conversation_id !== this.conversationId) return;
        frame.messages.forEach((m) => this.deliver(m));
        this.online();
        return;
      case "message":
        return this.deliver(frame.message);
      case "ack":
        return this.settle(frame.client_id, { message_id: frame.message_id, seq: frame.seq });
      case "pong":
        this.lastPong = Date.now();
        return;
      case "error":
        if (frame.client_id) {
          const status = STATUS_BY_CODE[frame.code] || 500;
          this.settle(frame.client_id, new ApiError(frame.code, frame.message, status, frame.retry_after || 0));
        } else if (frame.code === "not_found" && frame.conversation_id === this.conversationId) {
          this.events.lost(frame.conversation_id);
        }
        return;
      default:
        if ("conversation_id" in frame && frame.conversation_id !== this.conversationId) return;
        this.events.frame(frame);
    }
  }

  private deliver(message: Message): void {
    if (message.conversation_id !== this.conversationId || message.seq <= this.lastSeq) return;
    this.lastSeq = message.seq;
    this.events.frame({ type: "message", message });
  }

  private async openSse(): Promise<void> {
    const id = this.conversationId;
    if (!id) return this.online();
    const abort = new AbortController();
    this.sse = abort;
    try {
      const response = await this.api.raw(`/conversations/${id}/stream?after_seq=${this.lastSeq}`, {
        headers: { Accept: "text/event-stream" },
        signal: abort.signal,
      });
      await this.readSse(response, abort);
    } catch (error) {
      if (abort.signal.aborted) return;
      if (error instanceof ApiError && error.code === "not_found") return this.events.lost(id);
      return this.failed(error);
    }
    if (!abort.signal.aborted) this.retry();
  }

  private async readSse(response: Response, abort: AbortController): Promise<void> {
    const reader = response.body?.getReader();
    if (!reader) return;
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || abort.signal.aborted) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (!data) continue;
        const frame = JSON.parse(data) as ServerFrame;
        this.handle(frame);
      }
    }
  }
}
