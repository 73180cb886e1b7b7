// The frame's side of the postMessage protocol (web/shared/bridge.ts). Messages go only to the
// parent page's origin, which the loader passes in the URL fragment and the browser confirms
// (location.ancestorOrigins where available; CSP frame-ancestors already limits who can frame
// us). Incoming messages are accepted only from that window and origin.
import { TAG, type ToFrame, type ToLoader } from "../shared/bridge";

type InitMessage = Extract<ToFrame, { type: "init" }>;
type Handler = (message: ToFrame) => void;
type Out = { [K in ToLoader["type"]]: Omit<Extract<ToLoader, { type: K }>, "fd"> }[ToLoader["type"]];

function parentOrigin(): string | null {
  if (window.parent === window) return null;
  const hinted = new URLSearchParams(location.hash.slice(1)).get("origin");
  const ancestors = (location as Location & { ancestorOrigins?: DOMStringList }).ancestorOrigins;
  const actual = ancestors && ancestors.length ? ancestors[0] : null;
  if (actual) return actual;
  return hinted && /^https?:\/\/[^/]+$/.test(hinted) ? hinted : null;
}

export class Bridge {
  readonly origin = parentOrigin();
  private handlers: Handler[] = [];

  constructor() {
    addEventListener("message", (event: MessageEvent) => {
      if (!this.origin || event.source !== window.parent || event.origin !== this.origin) return;
      const data = event.data as ToFrame;
      if (data && data.fd === TAG) this.handlers.forEach((handler) => handler(data));
    });
  }

  get embedded(): boolean {
    return this.origin !== null;
  }

  post(message: Out): void {
    if (this.origin) window.parent.postMessage({ ...message, fd: TAG }, this.origin);
  }

  on(handler: Handler): void {
    this.handlers.push(handler);
  }

  /** Say hello and wait (briefly) for the loader's init: identity, open state, locale. */
  init(timeoutMs = 1500): Promise<InitMessage | null> {
    if (!this.embedded) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.on((message) => {
        if (message.type !== "init") return;
        clearTimeout(timer);
        resolve(message);
      });
      this.post({ type: "hello" });
    });
  }
}
