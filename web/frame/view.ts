// The chat frame's DOM: header with connection status, the message list (server messages in seq
// order, then the visitor's unsent ones in queue order), streamed answers, citations, the typing
// indicator, the error banner with its rate-limit countdown, quick actions and the composer.
import { append, clear, h } from "./dom";
import { duration, format, t } from "./i18n";
import { link, renderMarkdown, safeUrl } from "./markdown";
import type { Item } from "./outbox";
import type { Citation, Message, QuickAction, Status } from "./types";

export interface ViewHooks {
  submit(text: string): void;
  retry(clientId: string): void;
  close(): void;
  typing(): void;
  quickAction(action: QuickAction): void;
}

export class ChatView {
  readonly root: HTMLElement;
  readonly list: HTMLOListElement;
  readonly extras: HTMLElement;
  private readonly status: HTMLElement;
  private readonly banner: HTMLElement;
  private readonly typingEl: HTMLElement;
  private readonly actions: HTMLElement;
  private readonly input: HTMLTextAreaElement;
  private readonly scroller: HTMLElement;
  private readonly streams = new Map<string, { el: HTMLElement; text: string; frame: number }>();
  private countdownTimer = 0;
  private typingTimer = 0;

  constructor(title: string, private readonly hooks: ViewHooks) {
    this.status = h("div", { class: "fd-status", role: "status", "data-status": "connecting" }, t.connecting);
    const close = h("button", { class: "fd-close", type: "button", "aria-label": t.close, title: t.close }, "×");
    close.addEventListener("click", () => hooks.close());
    this.list = h("ol", { class: "fd-messages", "aria-live": "polite" });
    this.typingEl = h("div", { class: "fd-typing", hidden: true, "aria-label": t.typing }, h("span"), h("span"), h("span"));
    this.extras = h("div", { class: "fd-extras" });
    this.scroller = h("div", { class: "fd-body" }, this.extras, this.list, this.typingEl);
    this.banner = h("div", { class: "fd-banner", role: "alert", hidden: true });
    this.actions = h("div", { class: "fd-actions" });
    this.input = h("textarea", { class: "fd-input", rows: "1", maxlength: "4000", placeholder: t.placeholder, "aria-label": t.placeholder });
    const send = h("button", { class: "fd-send", type: "submit", "aria-label": t.send }, t.send);
    const form = h("form", { class: "fd-composer" }, this.input, send);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => hooks.typing());
    const head = h("header", { class: "fd-head" }, h("div", { class: "fd-titles" }, h("div", { class: "fd-title" }, title), this.status), close);
    this.root = h("div", { class: "fd-chat" }, head, this.scroller, this.banner, this.actions, form);
  }

  private submit(): void {
    const text = this.input.value.trim();
    if (!text) return;
    this.input.value = "";
    this.hooks.submit(text);
  }

  focus(): void {
    this.input.focus({ preventScroll: true });
  }

  setStatus(status: Status): void {
    this.status.dataset.status = status;
    this.status.textContent = t[status];
  }

  /** A message to the visitor above the composer; a countdown replaces {time} every second. */
  showBanner(text: string | null, countdownS = 0): void {
    clearInterval(this.countdownTimer);
    this.banner.hidden = !text;
    if (!text) return;
    if (!countdownS) {
      this.banner.textContent = text;
      return;
    }
    const until = Date.now() + countdownS * 1000;
    const tick = (): void => {
      const left = (until - Date.now()) / 1000;
      if (left <= 0) {
        clearInterval(this.countdownTimer);
        this.banner.hidden = true;
        return;
      }
      this.banner.textContent = format(text, { time: duration(left) });
    };
    tick();
    this.countdownTimer = window.setInterval(tick, 1000);
  }

  setQuickActions(actions: QuickAction[]): void {
    clear(this.actions);
    for (const action of actions) {
      const button = h("button", { type: "button", class: "fd-action", "data-kind": action.kind }, action.label);
      button.addEventListener("click", () => this.hooks.quickAction(action));
      this.actions.appendChild(button);
    }
  }

  greeting(text: string): void {
    if (text) this.list.appendChild(h("li", { class: "fd-msg fd-assistant fd-greeting" }, h("div", { class: "fd-text" }, renderMarkdown(text))));
  }

  private firstPending(): Element | null {
    return this.list.querySelector(".fd-pending");
  }

  private place(el: HTMLElement): void {
    const anchor = this.firstPending();
    if (anchor && anchor !== el) this.list.insertBefore(el, anchor);
    else if (!el.parentNode || anchor !== el) this.list.appendChild(el);
    this.scrollDown();
  }

  scrollDown(): void {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** A stored message (history or live). Returns its element. */
  message(message: Message): HTMLElement {
    const byClient = message.client_id ? this.list.querySelector<HTMLElement>(`[data-client-id="${CSS.escape(message.client_id)}"]`) : null;
    const el = byClient || this.streams.get(message.id)?.el || h("li");
    const stream = this.streams.get(message.id);
    if (stream) cancelAnimationFrame(stream.frame);
    this.streams.delete(message.id);
    el.className = `fd-msg fd-${message.role}`;
    el.dataset.id = message.id;
    el.dataset.seq = String(message.seq);
    clear(el);
    el.appendChild(h("div", { class: "fd-text" }, message.role === "visitor" ? plain(message.text) : renderMarkdown(message.text)));
    if (message.citations?.length) el.appendChild(citations(message.citations));
    if (message.role === "visitor") el.appendChild(h("div", { class: "fd-state", "data-state": "sent" }, t.sent));
    this.place(el);
    return el;
  }

  /** One piece of a streamed answer; rendered at most once per animation frame. */
  delta(messageId: string, text: string): void {
    if (this.list.querySelector(`[data-id="${CSS.escape(messageId)}"]`)) return; // final text is in
    let stream = this.streams.get(messageId);
    if (!stream) {
      stream = { el: h("li", { class: "fd-msg fd-assistant fd-streaming" }), text: "", frame: 0 };
      this.streams.set(messageId, stream);
      this.place(stream.el);
    }
    stream.text += text;
    const current = stream;
    if (!current.frame) {
      current.frame = requestAnimationFrame(() => {
        current.frame = 0;
        clear(current.el);
        current.el.appendChild(h("div", { class: "fd-text" }, renderMarkdown(current.text)));
        this.scrollDown();
      });
    }
  }

  /** A visitor message not yet stored: queued, sending or failed (with a retry button). */
  pending(item: Item, removed: boolean): void {
    let el = this.list.querySelector<HTMLElement>(`[data-client-id="${CSS.escape(item.client_id)}"]`);
    if (el?.dataset.id) return; // already replaced by the stored message
    if (removed) {
      // acknowledged: keep the bubble until the stored message replaces it
      if (el) {
        el.classList.remove("fd-pending");
        const state = el.querySelector<HTMLElement>(".fd-state");
        if (state) {
          state.dataset.state = "sent";
          state.textContent = t.sent;
        }
      }
      return;
    }
    if (!el) {
      el = h("li", { class: "fd-msg fd-visitor fd-pending", "data-client-id": item.client_id });
      this.list.appendChild(el);
    }
    clear(el);
    const label = item.state === "failed" ? t.failed : item.state === "sending" && navigator.onLine ? t.sending : t.queued;
    const state = h("div", { class: "fd-state", "data-state": item.state }, label);
    if (item.state === "failed") {
      const retry = h("button", { type: "button", class: "fd-retry" }, t.retry);
      retry.addEventListener("click", () => this.hooks.retry(item.client_id));
      append(state, " · ", retry);
    }
    append(el, h("div", { class: "fd-text" }, plain(item.text)), state);
    this.scrollDown();
  }

  typing(on: boolean, forMs = 30000): void {
    clearTimeout(this.typingTimer);
    this.typingEl.hidden = !on;
    if (on) {
      this.typingTimer = window.setTimeout(() => (this.typingEl.hidden = true), forMs);
      this.scrollDown();
    }
  }

  /** Append a node after a message's content (the lead form). */
  attach(messageEl: HTMLElement, node: HTMLElement): void {
    messageEl.appendChild(node);
    this.scrollDown();
  }
}

function plain(text: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  text.split("\n").forEach((line, i) => append(frag, i ? h("br") : null, line));
  return frag;
}

function citations(list: Citation[]): HTMLElement {
  const items = list.slice(0, 8).map((c) => {
    const href = c.url ? safeUrl(c.url) : null;
    const title = href ? link(href, c.title) : h("span", { class: "fd-cite-title" }, c.title);
    return h("li", {}, title, c.snippet ? h("div", { class: "fd-snippet" }, c.snippet) : null);
  });
  return h("details", { class: "fd-sources" }, h("summary", {}, `${t.sources} (${list.length})`), h("ol", {}, ...items));
}
