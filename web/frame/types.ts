// Shapes of the widget API and /ws/chat frames the chat frame uses (docs/protocol.md).
export interface Citation {
  title: string;
  url?: string | null;
  snippet: string;
}

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  role: "visitor" | "assistant" | "operator" | "system";
  text: string;
  created_at: string;
  client_id?: string | null;
  citations?: Citation[] | null;
  meta?: Record<string, unknown> | null;
}

export interface QuickAction {
  id: string;
  label: string;
  kind: "message" | "url";
  value: string;
}

export interface Offer {
  id: string;
  title: string;
  teaser: string;
  fields: string[];
  unlocked: boolean;
  content?: string | null;
}

export interface SiteConfig {
  site_id: string;
  name: string;
  greeting: string;
  locale: string;
  appearance: Record<string, unknown> | null;
  quick_actions: QuickAction[] | null;
  offers: Offer[] | null;
}

export interface SessionIssued {
  visitor_id: string;
  access_token: string;
  expires_in: number;
  refresh_token: string;
  verified: boolean;
}

export type ServerFrame =
  | { type: "ready"; visitor_id: string; heartbeat_s: number }
  | { type: "joined"; conversation_id: string; messages: Message[]; has_more: boolean; last_seq: number }
  | { type: "message"; message: Message }
  | { type: "delta"; conversation_id: string; message_id: string; text: string }
  | { type: "typing"; conversation_id: string; role?: string }
  | { type: "ack"; client_id: string; message_id: string; seq: number }
  | { type: "pong" }
  | { type: "error"; code: string; message: string; client_id?: string; conversation_id?: string; retry_after?: number };

/** Connection state shown to the visitor. */
export type Status = "connecting" | "online" | "reconnecting" | "offline";
