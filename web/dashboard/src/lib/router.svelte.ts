// Client-side routes are paths under /dashboard (the server answers every one of them with the
// app). `route.path` is the part after /dashboard, e.g. "/inbox/conv_1"; links are plain <a href>
// elements, intercepted here so that following one does not reload the page.

import { root } from "./api";

const BASE = `${root}/dashboard`;

function current(): string {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  return path === "" ? "/" : path;
}

export const route = $state<{ path: string; query: URLSearchParams }>({
  path: current(),
  query: new URLSearchParams(location.search),
});

export function href(path: string): string {
  return `${BASE}${path === "/" ? "/" : path}`;
}

export function navigate(path: string, replace = false): void {
  const url = href(path);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  sync();
}

function sync(): void {
  const [path, search] = [current(), location.search];
  route.path = path;
  route.query = new URLSearchParams(search);
}

export function startRouter(): void {
  addEventListener("popstate", sync);
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = (event.target as Element | null)?.closest?.("a");
    if (!link || link.target || link.hasAttribute("download")) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
    event.preventDefault();
    history.pushState(null, "", url.pathname + url.search);
    sync();
  });
}

/** `match("/inbox/:id", "/inbox/conv_1")` → {id: "conv_1"}; null when it does not match. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split("/").filter(Boolean);
  const have = path.split("/").filter(Boolean);
  if (want.length !== have.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(":")) params[want[i].slice(1)] = decodeURIComponent(have[i]);
    else if (want[i] !== have[i]) return null;
  }
  return params;
}
