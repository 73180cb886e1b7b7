// The chat frame's entry point (`/w/{site_id}`): wires the session, the live connection, the
// offline outbox, the view, offers, the lead form, analytics and the bridge to the loader.
// Owns the chat's state: the current conversation, what is awaiting an answer, and the moment
// the chat becomes usable ("live").
import { Analytics } from "./analytics";
import { Api, ApiError } from "./api";
import { Bridge } from "./bridge";
import { Connection } from "./connection";
import { leadForm, Offers } from "./forms";
import { chooseLanguage, lang, t } from "./i18n";
import { safeUrl } from "./markdown";
import { Outbox, type Item } from "./outbox";
import { Session } from "./session";
import { backoff, sleep, store } from "./store";
import type { Message, QuickAction, ServerFrame, SiteConfig, Status } from "./types";
import { ChatView } from "./view";
import type { Identity } from "../shared/bridge";

const siteId = document.body.dataset.siteId || "";
const prefix = location.pathname.replace(/\/w\/[^/]*\/?$/, "");
const api = new Api(`${location.origin}${prefix}/api/widget/v1`);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${prefix}/ws/chat`;
const analytics = new Analytics(api);
const bridge = new Bridge();
const track = (type: string, data: Record<string, unknown> = {}): void => analytics.track(type, data);
store.scope(siteId);

class Chat {
  readonly view: ChatView;
  readonly session: Session;
  readonly conn: Connection;
  readonly outbox: Outbox;
  readonly offers: Offers;
  conversationId: string | null = null;
  private creating: Promise<string> | null = null;
  private live = false;
  private started = false;
  private blocked = false;
  private awaiting: { since: number; firstDelta: number } | null = null;
  private lastTyping = 0;
  private leadEl: HTMLElement | null = null;

  constructor(config: SiteConfig, identity: Identity | null) {
    this.view = new ChatView(config.name || t.title, {
      submit: (text) => this.outbox.add(text),
      retry: (clientId) => this.outbox.retry(clientId),
      close: () => bridge.post({ type: "close" }),
      typing: () => this.typing(),
      quickAction: (action) => this.quickAction(action),
    });
    document.body.appendChild(this.view.root);
    this.view.greeting(config.greeting);
    this.view.setQuickActions(config.quick_actions || []);
    this.session = new Session(api, siteId, lang, identity);
    this.conn = new Connection(api, this.session, wsUrl, {
      status: (status) => this.status(status),
      frame: (frame) => this.frame(frame),
      lost: () => this.lost(),
      blocked: () => this.block(),
    });
    this.outbox = new Outbox({
      deliver: (item) => this.deliver(item),
      changed: (item, removed) => this.view.pending(item, removed),
      trouble: (error) => this.trouble(error),
    });
    this.outbox.items.forEach((item) => this.view.pending(item, false));
    this.offers = new Offers(api, track, () => this.conversationId);
    this.view.extras.appendChild(this.offers.el);
  }

  async start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.session.start();
        break;
      } catch (error) {
        if (error instanceof ApiError && error.code === "origin_not_allowed") return this.block();
        this.view.setStatus(navigator.onLine ? "reconnecting" : "offline");
        if (error instanceof ApiError && error.code !== "network") this.trouble(error);
        await sleep(backoff(attempt, 1000));
      }
    }
    if (this.session.identityRejected) this.view.showBanner(t.identityInvalid);
    this.started = true;
    analytics.start();
    await this.pickConversation();
    if (this.conversationId) this.conn.setConversation(this.conversationId, 0);
    this.conn.start();
    this.outbox.kick();
    this.offers.load().catch((error) => analytics.error(error, "offers.load"));
  }

  async identify(identity: Identity): Promise<void> {
    const before = this.session.visitorId;
    await this.session.identify(identity);
    if (before && this.session.visitorId !== before) location.reload(); // another person's chat
  }

  /** Resume this visitor's conversation: the one this browser used, else their newest. */
  private async pickConversation(): Promise<void> {
    const saved = store.json<{ visitor_id: string; id: string }>("conversation");
    if (saved && saved.visitor_id === this.session.visitorId) {
      this.conversationId = saved.id;
      return;
    }
    try {
      const { conversations } = await api.json<{ conversations: Array<{ id: string }> }>("/conversations");
      if (conversations.length) this.remember(conversations[0].id);
    } catch {
      // a new conversation is created with the first message
    }
  }

  private remember(id: string): void {
    this.conversationId = id;
    store.setJson("conversation", { visitor_id: this.session.visitorId, id });
  }

  private ensureConversation(): Promise<string> {
    if (this.conversationId) return Promise.resolve(this.conversationId);
    if (!this.creating) {
      this.creating = api
        .post<{ id: string }>("/conversations", {})
        .then(({ id }) => {
          this.remember(id);
          this.conn.setConversation(id, 0);
          return id;
        })
        .finally(() => (this.creating = null));
    }
    return this.creating;
  }

  private async deliver(item: Item): Promise<void> {
    while (!this.started) await sleep(200);
    await this.conn.whenOnline();
    await this.ensureConversation();
    await this.conn.whenOnline();
    const sentAt = performance.now();
    await this.conn.send(item.client_id, item.text);
    track("message.sent", { ack_ms: Math.round(performance.now() - sentAt), queued_ms: Date.now() - item.at, transport: this.conn.mode });
    this.awaiting = { since: sentAt, firstDelta: 0 };
    this.view.typing(true);
  }

  private status(status: Status): void {
    this.view.setStatus(status);
    if (status === "online" && !this.live) {
      this.live = true;
      bridge.post({ type: "live" });
      track("widget.timing", { frame_ready_ms: Math.round(performance.now()), transport: this.conn.mode });
    }
    if (status === "online") this.outbox.kick();
  }

  private frame(frame: ServerFrame): void {
    if (frame.type === "message") this.message(frame.message);
    else if (frame.type === "delta") {
      this.view.delta(frame.message_id, frame.text);
      this.view.typing(false);
      if (this.awaiting && !this.awaiting.firstDelta) this.awaiting.firstDelta = performance.now();
    } else if (frame.type === "typing" && frame.role !== "visitor") this.view.typing(true, 6000);
  }

  private message(message: Message): void {
    const el = this.view.message(message);
    if (message.role === "visitor") {
      if (message.client_id) this.outbox.done(message.client_id);
    } else {
      this.view.typing(false);
      if (this.awaiting) {
        const { since, firstDelta } = this.awaiting;
        track("message.answered", { answer_ms: Math.round(performance.now() - since), first_delta_ms: firstDelta ? Math.round(firstDelta - since) : null, role: message.role });
        this.awaiting = null;
      }
      if (message.meta?.lead_offer && !store.get("lead_done")) {
        this.leadEl?.remove();
        this.leadEl = leadForm(api, message.conversation_id, track, () => store.set("lead_done", "1"));
        this.view.attach(el, this.leadEl);
      }
    }
    if (this.live) {
      const { id, conversation_id, seq, role, text, created_at } = message;
      bridge.post({ type: "message", message: { id, conversation_id, seq, role, text, created_at } });
    }
  }

  private lost(): void {
    store.set("conversation", null);
    this.conversationId = null;
    location.reload();
  }

  private block(): void {
    this.blocked = true;
    this.conn.stop();
    this.view.showBanner(t.originNotAllowed);
    this.view.root.classList.add("fd-blocked");
    bridge.post({ type: "blocked" });
  }

  private trouble(error: ApiError | null): void {
    if (this.blocked) return;
    if (!error) return this.view.showBanner(null);
    if (error.code === "rate_limited") return this.view.showBanner(t.rateLimited, Math.max(1, error.retryAfter));
    if (error.code === "origin_not_allowed") return this.block();
    if (error.code === "network") return this.view.showBanner(navigator.onLine ? t.networkError : null);
    if (error.status >= 500 || error.code === "upstream_unavailable") return this.view.showBanner(t.serverError);
    if (error.status === 422 || error.status === 413) return this.view.showBanner(t.invalidInput);
    this.view.showBanner(t.serverError);
  }

  private typing(): void {
    const now = Date.now();
    if (now - this.lastTyping > 3000) {
      this.lastTyping = now;
      this.conn.typing();
    }
  }

  private quickAction(action: QuickAction): void {
    track("quick_action.clicked", { action_id: action.id, kind: action.kind });
    if (action.kind === "message") this.outbox.add(action.value);
    else {
      const href = safeUrl(action.value);
      if (href) window.open(href, "_blank", "noopener,noreferrer");
    }
  }

  opened(first: boolean): void {
    track("widget.opened", { first });
    this.view.focus();
  }
}

function applyAppearance(config: SiteConfig): void {
  const look = config.appearance || {};
  const root = document.documentElement;
  if (typeof look.color === "string" && /^#[0-9a-f]{3,8}$/i.test(look.color)) root.style.setProperty("--fd-accent", look.color);
  const theme = look.theme === "dark" || look.theme === "light" ? look.theme : "auto";
  root.dataset.theme = theme;
}

async function main(): Promise<void> {
  const init = await bridge.init();
  let config: SiteConfig;
  for (let attempt = 0; ; attempt++) {
    try {
      config = await api.json<SiteConfig>(`/sites/${encodeURIComponent(siteId)}/config`, {}, false);
      break;
    } catch (error) {
      await sleep(backoff(attempt, 1000));
    }
  }
  chooseLanguage(init?.locale, navigator.language, config.locale);
  applyAppearance(config);
  const chat = new Chat(config, init?.identity || null);
  if (init?.timings?.launcher_at !== undefined) track("widget.timing", { launcher_ms: Math.round(init.timings.launcher_at) });
  bridge.on((message) => {
    if (message.type === "open") chat.opened(false);
    else if (message.type === "identify") chat.identify(message.identity).catch((error) => analytics.error(error, "identify"));
  });
  if (!bridge.embedded || init?.open) chat.opened(true);
  await chat.start();
}

main().catch((error) => analytics.error(error, "main"));
