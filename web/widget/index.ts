// The loader, `/widget.js` (budget: 3 KB gzipped). It owns everything that runs in the host page:
// reading the site's public config, drawing the launcher, creating the chat iframe on first open
// (no chat code is loaded before), the postMessage bridge to the frame (origin- and
// source-checked), and the page API `FrontDesk(command, ...args)`, including calls queued by the
// snippet before this script loaded. `FrontDesk("destroy")` undoes all of it.
import { loader as en } from "../i18n/en";
import { loader as ru } from "../i18n/ru";
import type { Identity, PublicMessage, ToFrame, ToLoader } from "../shared/bridge";
import { TAG } from "../shared/bridge";

type Callback = (data?: PublicMessage) => void;
type Api = ((command: string, ...args: unknown[]) => void) & { q?: ArrayLike<unknown>[]; v?: 1 };
type Appearance = { color?: unknown; position?: unknown; theme?: unknown };
type Config = { locale?: string; appearance?: Appearance | null };

const win = window as unknown as { FrontDesk?: Api };
const started = performance.now();

function boot(script: HTMLScriptElement): void {
  const siteId = script.dataset.siteId || "";
  const base = script.src.replace(/\/widget\.js([?#].*)?$/, "");
  const frameOrigin = new URL(base).origin;
  const timers = new Set<number>();
  const listeners: Record<string, Callback[]> = { message: [], open: [], close: [] };
  const abort = new AbortController();
  const wide = matchMedia("(min-width: 481px)");
  const timings: Record<string, number> = {};
  let strings = en;
  let locale = "en";
  let color = "#2952cc";
  let left = false;
  let isOpen = false;
  let wantOpen = false;
  let drawn = false;
  let identity: Identity | null = null;
  let frame: HTMLIFrameElement | null = null;
  let frameReady = false;
  let outbox: ToFrame[] = [];
  let launcher: HTMLButtonElement | null = null;

  const host = document.createElement("div");
  host.setAttribute("data-frontdesk", siteId);
  const root = host.attachShadow({ mode: "open" });
  const css = (el: HTMLElement, styles: Partial<CSSStyleDeclaration>): void => {
    Object.assign(el.style, styles);
  };
  css(host, { position: "fixed", zIndex: "2147483000", bottom: "0", width: "0", height: "0" });

  const later = (fn: () => void, ms: number): void => {
    const id = window.setTimeout(() => {
      timers.delete(id);
      fn();
    }, ms);
    timers.add(id);
  };

  const emit = (name: string, data?: PublicMessage): void => {
    for (const cb of listeners[name] || []) {
      try {
        cb(data);
      } catch (error) {
        console.error(error);
      }
    }
  };

  const post = (message: ToFrame): void => {
    if (frame && frameReady) frame.contentWindow?.postMessage(message, frameOrigin);
    else outbox.push(message);
  };

  const layout = (): void => {
    if (!frame) return;
    const side = left ? { left: "16px", right: "" } : { right: "16px", left: "" };
    css(
      frame,
      wide.matches
        ? { ...side, bottom: "88px", top: "", width: "380px", height: "min(640px, calc(100vh - 112px))", borderRadius: "14px" }
        : { left: "0", right: "0", top: "0", bottom: "0", width: "100%", height: "100%", borderRadius: "0" },
    );
    css(frame, { display: isOpen ? "block" : "none" });
    if (launcher) css(launcher, { display: isOpen && !wide.matches ? "none" : "block" });
  };

  const createFrame = (): void => {
    frame = document.createElement("iframe");
    frame.title = strings.open;
    frame.src = `${base}/w/${encodeURIComponent(siteId)}#origin=${encodeURIComponent(location.origin)}`;
    frame.setAttribute("allow", "clipboard-write");
    css(frame, { position: "fixed", border: "0", background: "transparent", boxShadow: "0 8px 32px rgba(0,0,0,.25)", colorScheme: "normal" });
    root.appendChild(frame);
  };

  const setOpen = (open: boolean): void => {
    if (!drawn) {
      wantOpen = open;
      return;
    }
    if (open === isOpen) return;
    isOpen = open;
    if (open && !frame) {
      timings.open_at = performance.now();
      createFrame();
    } else {
      post({ fd: TAG, type: open ? "open" : "close" });
    }
    if (launcher) {
      launcher.setAttribute("aria-expanded", String(open));
      launcher.setAttribute("aria-label", open ? strings.close : strings.open);
    }
    layout();
    emit(open ? "open" : "close");
  };

  const onMessage = (event: MessageEvent): void => {
    if (!frame || event.source !== frame.contentWindow || event.origin !== frameOrigin) return;
    const data = event.data as ToLoader;
    if (!data || data.fd !== TAG) return;
    if (data.type === "hello") {
      // (Re)loaded frame: send the current state, then anything queued meanwhile.
      frameReady = true;
      const queued = outbox;
      outbox = [];
      post({ fd: TAG, type: "init", identity, open: isOpen, locale, timings });
      queued.forEach(post);
    } else if (data.type === "live") {
      timings.live_at = performance.now();
      performance.mark("frontdesk:frame-ready");
    } else if (data.type === "close") setOpen(false);
    else if (data.type === "message") emit("message", data.message);
  };

  const icon = (): SVGSVGElement => {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "#fff");
    path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
    svg.appendChild(path);
    return svg;
  };

  const draw = (): void => {
    launcher = document.createElement("button");
    launcher.type = "button";
    launcher.setAttribute("aria-label", strings.open);
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("part", "launcher");
    launcher.appendChild(icon());
    css(launcher, {
      position: "fixed",
      bottom: "16px",
      [left ? "left" : "right"]: "16px",
      width: "56px",
      height: "56px",
      padding: "14px",
      border: "0",
      borderRadius: "50%",
      background: color,
      cursor: "pointer",
      boxShadow: "0 4px 16px rgba(0,0,0,.25)",
      lineHeight: "0",
    });
    launcher.addEventListener("click", () => setOpen(!isOpen));
    root.appendChild(launcher);
    drawn = true;
    timings.launcher_at = performance.now() - started;
    performance.mark("frontdesk:launcher-visible");
    if (wantOpen) setOpen(true);
  };

  const note = (text: string): void => {
    const box = document.createElement("div");
    box.setAttribute("role", "status");
    box.setAttribute("part", "notice");
    box.textContent = text;
    css(box, {
      position: "fixed",
      bottom: "16px",
      right: "16px",
      maxWidth: "260px",
      padding: "10px 14px",
      borderRadius: "10px",
      background: "#fff4e5",
      color: "#5c3b00",
      font: "14px/1.4 system-ui, sans-serif",
      boxShadow: "0 2px 10px rgba(0,0,0,.2)",
    });
    root.appendChild(box);
  };

  const pickLocale = (siteLocale?: string): void => {
    const wanted = [script.dataset.locale, navigator.language, siteLocale];
    const found = wanted.map((l) => (l || "").slice(0, 2).toLowerCase()).find((l) => l === "en" || l === "ru");
    locale = found || "en";
    strings = locale === "ru" ? ru : en;
  };

  const load = async (attempt: number): Promise<void> => {
    const url = `${base}/api/widget/v1/sites/${encodeURIComponent(siteId)}/config`;
    const opts: RequestInit = { credentials: "omit", signal: abort.signal };
    let response: Response;
    try {
      response = await fetch(url, opts);
    } catch {
      if (abort.signal.aborted) return;
      // No CORS headers at all: either the network is down, or the server refused this origin
      // (it names only allowed origins). An opaque no-cors answer tells the two apart.
      const reachable = await fetch(url, { ...opts, mode: "no-cors" }).then(() => true, () => false);
      if (reachable) return note(strings.blocked);
      return later(() => void load(attempt + 1), Math.min(60000, 2000 * 2 ** attempt));
    }
    if (response.status === 403) return note(strings.blocked);
    if (!response.ok) return console.warn("FrontDesk: site config", response.status);
    const config = (await response.json()) as Config;
    const look = config.appearance || {};
    pickLocale(config.locale);
    if (typeof look.color === "string" && /^#[0-9a-f]{3,8}$/i.test(look.color)) color = look.color;
    left = look.position === "left";
    draw();
  };

  const api: Api = (command: string, ...args: unknown[]): void => {
    if (command === "open") setOpen(true);
    else if (command === "close") setOpen(false);
    else if (command === "toggle") setOpen(drawn ? !isOpen : !wantOpen);
    else if (command === "identify") {
      identity = args[0] as Identity;
      if (frameReady) post({ fd: TAG, type: "identify", identity });
    } else if (command === "on" && listeners[args[0] as string] && typeof args[1] === "function") {
      listeners[args[0] as string].push(args[1] as Callback);
    } else if (command === "destroy") {
      abort.abort();
      timers.forEach((id) => clearTimeout(id));
      timers.clear();
      removeEventListener("message", onMessage);
      wide.removeEventListener("change", layout);
      host.remove();
      for (const name in listeners) listeners[name] = [];
      delete win.FrontDesk;
    } else console.warn("FrontDesk: unknown command", command);
  };
  api.v = 1;

  const queued = win.FrontDesk?.q || [];
  win.FrontDesk = api;
  addEventListener("message", onMessage);
  wide.addEventListener("change", layout);
  pickLocale();
  (document.body || document.documentElement).appendChild(host);
  for (const call of Array.from(queued)) api(...(Array.from(call) as [string, ...unknown[]]));
  void load(0);
}

const current = document.currentScript as HTMLScriptElement | null;
const script = current?.dataset.siteId ? current : document.querySelector<HTMLScriptElement>("script[data-site-id][src*='widget.js']");
if (script && !win.FrontDesk?.v) boot(script);
