// Who is signed in. The session itself is the HttpOnly cookie the server set; this module knows
// the operator (from sign-in or GET /auth/me after a reload) and keeps the CSRF token in memory.

import { ApiError, get, post, setCsrf } from "./api";
import type { Operator, Role } from "./types";

const PERMISSIONS: Record<Role, string[]> = {
  owner: ["read", "write", "admin", "owner", "events"],
  admin: ["read", "write", "admin", "events"],
  operator: ["read", "write", "events"],
  viewer: ["read", "events"],
};

export const session = $state<{ operator: Operator | null; checked: boolean }>({
  operator: null,
  checked: false,
});

export function can(permission: string): boolean {
  const role = session.operator?.role;
  return role ? PERMISSIONS[role].includes(permission) : false;
}

/** After a reload: is the cookie still a live session? */
export async function restore(): Promise<void> {
  try {
    session.operator = await get<Operator>("/auth/me");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    session.operator = null;
  } finally {
    session.checked = true;
  }
}

export async function signIn(email: string, password: string): Promise<void> {
  const result = await post<{ operator: Operator; csrf_token: string }>("/auth/login", { email, password });
  setCsrf(result.csrf_token);
  session.operator = result.operator;
  session.checked = true;
}

export async function signOut(): Promise<void> {
  try {
    await post<void>("/auth/logout");
  } finally {
    signedOut();
  }
}

export function signedOut(): void {
  setCsrf(null);
  session.operator = null;
}
