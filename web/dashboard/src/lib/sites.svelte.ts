// The sites the operator can see, shared by every page's site filter; reloaded when a site is
// created or changed (live `site.*` events).

import { get, message } from "./api";
import { debounce, live } from "./live.svelte";
import type { Site } from "./types";

export const sites = $state<{ items: Site[]; loaded: boolean; error: string | null }>({
  items: [],
  loaded: false,
  error: null,
});

export async function loadSites(): Promise<void> {
  try {
    sites.items = (await get<{ sites: Site[] }>("/sites")).sites;
    sites.error = null;
  } catch (error) {
    sites.error = message(error);
  } finally {
    sites.loaded = true;
  }
}

export function siteName(id: string | null | undefined): string {
  if (!id) return "—";
  return sites.items.find((s) => s.id === id)?.name ?? id;
}

export function followSites(): () => void {
  const reload = debounce(() => void loadSites(), 300);
  const stop = live.onEvent((event) => {
    if (event.type.startsWith("site.")) reload();
  });
  const stopResync = live.onResync(reload);
  return () => {
    stop();
    stopResync();
  };
}
