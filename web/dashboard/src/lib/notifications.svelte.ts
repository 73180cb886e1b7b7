// The bell: the signed-in operator's unread notifications, from GET /api/v1/notifications and
// live `notification` / `notifications_read` frames on /ws/events. Where the server has no
// notifications API (404), the bell says so instead of failing.

import { ApiError, get, message, post } from "./api";
import { live } from "./live.svelte";
import type { Notification } from "./types";

export const notifications = $state<{
  available: boolean | null;
  unread: number;
  items: Notification[];
  error: string | null;
}>({ available: null, unread: 0, items: [], error: null });

export async function loadNotifications(): Promise<void> {
  try {
    const page = await get<{ items: Notification[]; unread: number }>("/notifications", { unread: true, limit: 20 });
    notifications.items = page.items;
    notifications.unread = page.unread;
    notifications.available = true;
    notifications.error = null;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
      notifications.available = false;
      notifications.error = null;
    } else {
      notifications.error = message(error);
    }
  }
}

export async function markRead(ids: string[] | "all"): Promise<void> {
  const body = ids === "all" ? { all: true } : { ids };
  const result = await post<{ unread: number }>("/notifications/read", body);
  notifications.unread = result.unread;
  notifications.items = notifications.items.map((n) =>
    ids === "all" || ids.includes(n.id) ? { ...n, read: true } : n,
  );
}

export function followNotifications(): () => void {
  const stopFrames = live.onFrame((frame) => {
    if (frame.type === "notification") {
      const note = frame.notification as Notification;
      if (notifications.items.some((n) => n.id === note.id)) return;
      notifications.items = [note, ...notifications.items].slice(0, 50);
      if (typeof frame.unread === "number") notifications.unread = frame.unread;
      else if (!note.read) notifications.unread += 1;
      notifications.available = true;
    } else if (frame.type === "notifications_read") {
      if (typeof frame.unread === "number") notifications.unread = frame.unread;
      const ids = Array.isArray(frame.ids) ? (frame.ids as string[]) : null;
      notifications.items = notifications.items.map((n) =>
        frame.all === true || ids?.includes(n.id) ? { ...n, read: true } : n,
      );
    }
  });
  // After a gap the list is the source of truth.
  const stopResync = live.onResync(() => void loadNotifications());
  return () => {
    stopFrames();
    stopResync();
  };
}
