// One line of text for an event in the activity lists.
import type { LiveEvent } from "./types";

function clip(text: unknown, length = 90): string {
  const value = typeof text === "string" ? text.replace(/\s+/g, " ").trim() : "";
  return value.length > length ? `${value.slice(0, length - 1)}…` : value;
}

export function conversationOf(event: LiveEvent): string | null {
  const id = event.data.conversation_id;
  return typeof id === "string" ? id : null;
}

export function describe(event: LiveEvent): string {
  const data = event.data;
  switch (event.type) {
    case "message.created": {
      const message = (data.message || {}) as { role?: string; text?: string };
      return `${message.role ?? "message"}: ${clip(message.text)}`;
    }
    case "conversation.started":
      return `New conversation (${String(data.channel ?? "widget")})`;
    case "conversation.closed":
      return "Conversation closed";
    case "operator.joined":
      return "An operator took over";
    case "lead.captured":
      return "Lead captured";
    case "offer.unlocked":
      return `Offer unlocked: ${String(data.offer_id ?? "")}`;
    case "quick_action.clicked":
      return `Quick action: ${String((data.data as Record<string, unknown> | undefined)?.action_id ?? "")}`;
    case "error.reported":
      return `Error: ${clip((data.data as Record<string, unknown> | undefined)?.message ?? data.message)}`;
    case "webhook.delivery_failed":
      return "Webhook delivery failed";
    case "webhook.delivery_succeeded":
      return "Webhook delivered";
    case "responder.failed":
      return "Responder failed";
    case "widget.event":
      return `Widget: ${String(data.name ?? "event")}`;
    case "site.updated":
      return `Site changed: ${((data.fields as string[]) || []).join(", ")}`;
    default:
      return event.type;
  }
}
