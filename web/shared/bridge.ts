// The postMessage protocol between the loader (host page) and the chat frame. Every message is
// `{fd: "frontdesk", type, ...}`; each side checks `event.origin` and `event.source` first.
export const TAG = "frontdesk";

export type Identity = { user_id: string; expires: number; signature: string } | { token: string };

/** Loader → frame. */
export type ToFrame =
  | { fd: typeof TAG; type: "init"; identity: Identity | null; open: boolean; locale: string; timings: Record<string, number> }
  | { fd: typeof TAG; type: "open" }
  | { fd: typeof TAG; type: "close" }
  | { fd: typeof TAG; type: "identify"; identity: Identity };

/** A message as the page API's `on("message")` callbacks receive it. */
export interface PublicMessage {
  id: string;
  conversation_id: string;
  seq: number;
  role: string;
  text: string;
  created_at: string;
}

/** Frame → loader. */
export type ToLoader =
  | { fd: typeof TAG; type: "hello" }
  | { fd: typeof TAG; type: "live" }
  | { fd: typeof TAG; type: "close" }
  | { fd: typeof TAG; type: "message"; message: PublicMessage }
  | { fd: typeof TAG; type: "blocked" };
