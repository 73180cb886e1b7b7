// The shapes the REST API and /ws/events send (docs/api.md, PROTOCOL.md), as the dashboard uses them.

export type Role = "owner" | "admin" | "operator" | "viewer";

export interface Operator {
  id: string;
  email: string;
  name: string;
  role: Role;
  disabled: boolean;
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
  fields: ("email" | "name" | "phone")[];
  content: string;
}

export interface Site {
  id: string;
  name: string;
  allowed_origins: string[];
  greeting: string;
  locale: string;
  responder: Record<string, unknown>;
  appearance: Record<string, unknown>;
  quick_actions: QuickAction[];
  offers: Offer[];
  limits: Record<string, unknown>;
  options: Record<string, boolean>;
  created_at: string;
  updated_at: string;
}

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  role: "visitor" | "assistant" | "operator" | "system";
  text: string;
  created_at: string;
  client_id?: string | null;
  citations?: { title: string; url?: string | null; snippet: string }[] | null;
  meta?: Record<string, unknown> | null;
}

export interface Conversation {
  id: string;
  site_id: string;
  visitor_id: string;
  status: "open" | "closed";
  channel: string;
  handler: "bot" | "operator";
  assigned_operator_id: string | null;
  last_seq: number;
  created_at: string;
  last_message_at: string | null;
  last_message?: { seq: number; role: string; text: string; created_at: string } | null;
}

export interface ConversationDetail extends Conversation {
  messages: Message[];
}

export interface Summary {
  conversations: number;
  messages: number;
  visitors: number;
  leads: number;
  errors: number;
  quick_action_clicks: number;
  offer_clicks: number;
  offer_unlocks: number;
  offer_views?: number;
  widget_opens: number;
  answers: number;
  cached_answers?: number;
  active_visitors?: number;
  latency_ms: { p50: number | null; p95: number | null };
  webhook_deliveries: { succeeded: number; failed: number; pending: number };
  quick_actions?: Record<string, number>;
  offers?: Record<string, { views: number; clicks: number; unlocks: number }>;
}

export interface Series {
  since: string;
  until: string;
  bucket_s: number;
  buckets: string[];
  series: Record<string, (number | null)[]>;
}

export interface LiveEvent {
  id: string;
  type: string;
  at: string;
  site_id: string | null;
  data: Record<string, unknown>;
}

export interface ErrorGroup {
  id: string;
  fingerprint: string;
  source: string;
  site_id: string | null;
  kind: string;
  message: string;
  count: number;
  first_seen: string;
  last_seen: string;
  sample: unknown;
}

export interface Notification {
  id: string;
  kind: string;
  title: string;
  body: string;
  at: string;
  read: boolean;
  event_id?: string;
  link?: string | null;
}

export interface KnowledgeDocument {
  id: string;
  site_id: string;
  title: string;
  source: string;
  url: string | null;
  content_type: string;
  chunk_count: number;
  updated_at: string;
}

/** A queued or finished indexing of an upload (servers that index in the background). */
export interface Ingestion {
  id: string;
  site_id: string;
  source: string;
  title: string;
  content_type: string;
  size: number;
  status: "queued" | "running" | "done" | "duplicate" | "failed";
  outcome: "added" | "updated" | "unchanged" | "duplicate" | null;
  progress: { stage: string; done: number; total: number };
  document_id: string | null;
  chunk_count: number;
  error: string | null;
  created_at: string;
  finished_at: string | null;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  site_id: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  key?: string;
}

export interface WebhookEndpoint {
  id: string;
  url: string;
  events: string[];
  site_id: string | null;
  description: string;
  status: string;
  disabled_reason: string | null;
  created_at: string;
  secret?: string;
}

export interface Delivery {
  id: string;
  event_id: string;
  event_type: string;
  status: string;
  attempts: number;
  last_status_code: number | null;
  next_attempt_at: string | null;
  created_at: string;
  attempt_log: {
    number: number;
    at: string;
    status_code: number | null;
    duration_ms: number;
    response: string | null;
    error: string | null;
  }[];
}

export interface AuditEntry {
  id: number;
  at: string;
  actor_kind: string;
  actor_id: string | null;
  action: string;
  target: string | null;
  site_id: string | null;
  ip: string | null;
  data: Record<string, unknown>;
}
