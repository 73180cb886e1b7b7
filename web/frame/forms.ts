// Click-to-unlock offers and the "leave your email" form. Offers come from GET /offers (the
// server remembers what this visitor unlocked, so a reload shows unlocked content again);
// clicking one opens an in-chat form for the fields it asks for, POST /offers/{id}/unlock
// reveals its content (safe Markdown). The lead form follows a graceful reply that carries
// `meta.lead_offer` and posts to /leads.
import { Api, ApiError } from "./api";
import { clear, h } from "./dom";
import { t } from "./i18n";
import { renderMarkdown } from "./markdown";
import type { Offer } from "./types";

type Track = (type: string, data?: Record<string, unknown>) => void;

const FIELD_TYPES: Record<string, string> = { email: "email", phone: "tel", name: "text" };
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function fieldLabel(field: string): string {
  return field === "email" ? t.email : field === "phone" ? t.phone : t.name;
}

/** A small form for contact fields; `send` resolves when accepted or throws an ApiError. */
function contactForm(fields: string[], submitLabel: string, send: (values: Record<string, string>) => Promise<void>, cancel?: () => void): HTMLFormElement {
  const inputs = fields.map((field) =>
    h("input", { name: field, type: FIELD_TYPES[field] || "text", required: true, autocomplete: field === "phone" ? "tel" : field, "aria-label": fieldLabel(field), placeholder: fieldLabel(field), maxlength: "200" }),
  );
  const error = h("div", { class: "fd-form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "fd-primary" }, submitLabel);
  const form = h("form", { class: "fd-form", novalidate: true }, ...inputs, error, h("div", { class: "fd-form-buttons" }, submit));
  if (cancel) {
    const back = h("button", { type: "button", class: "fd-secondary" }, t.cancel);
    back.addEventListener("click", cancel);
    form.lastElementChild?.appendChild(back);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values: Record<string, string> = {};
    for (const input of inputs) {
      const value = input.value.trim();
      const bad = !value ? t.required : input.name === "email" && !EMAIL.test(value) ? t.invalidEmail : "";
      if (bad) {
        error.textContent = bad;
        error.hidden = false;
        input.focus();
        return;
      }
      values[input.name] = value;
    }
    submit.disabled = true;
    error.hidden = true;
    send(values).catch((problem: unknown) => {
      submit.disabled = false;
      error.textContent = problem instanceof ApiError && problem.status === 422 ? problem.message : t.networkError;
      error.hidden = false;
    });
  });
  return form;
}

export class Offers {
  readonly el = h("div", { class: "fd-offers" });
  private viewed = new Set<string>();

  constructor(
    private readonly api: Api,
    private readonly track: Track,
    private readonly conversationId: () => string | null,
  ) {}

  async load(): Promise<void> {
    const { offers } = await this.api.json<{ offers: Offer[] }>("/offers");
    clear(this.el);
    offers.forEach((offer) => this.el.appendChild(this.card(offer)));
  }

  private card(offer: Offer): HTMLElement {
    const card = h("section", { class: "fd-offer", "data-offer-id": offer.id, "data-unlocked": String(offer.unlocked) });
    const body = h("div", { class: "fd-offer-body" });
    card.append(h("div", { class: "fd-offer-title" }, offer.title), body);
    if (offer.unlocked && offer.content) {
      body.append(h("div", { class: "fd-offer-content" }, renderMarkdown(offer.content)));
      return card;
    }
    if (!this.viewed.has(offer.id)) {
      this.viewed.add(offer.id);
      this.track("offer.viewed", { offer_id: offer.id });
    }
    const showTeaser = (): void => {
      clear(body);
      const unlock = h("button", { type: "button", class: "fd-primary" }, t.unlock);
      unlock.addEventListener("click", () => {
        this.track("offer.clicked", { offer_id: offer.id });
        clear(body);
        body.append(contactForm(offer.fields, t.getAccess, (values) => this.unlock(offer, values, card), showTeaser));
        body.querySelector("input")?.focus();
      });
      body.append(h("p", { class: "fd-teaser" }, offer.teaser), unlock);
    };
    showTeaser();
    return card;
  }

  private async unlock(offer: Offer, values: Record<string, string>, card: HTMLElement): Promise<void> {
    const body = { ...values, conversation_id: this.conversationId() || undefined, referrer: document.referrer || undefined };
    const result = await this.api.post<{ lead_id: string; offer?: Offer }>(`/offers/${encodeURIComponent(offer.id)}/unlock`, body);
    this.track("offer.submitted", { offer_id: offer.id, lead_id: result.lead_id });
    card.replaceWith(this.card(result.offer || { ...offer, unlocked: true }));
  }
}

/** The lead form under a graceful reply (`meta.lead_offer`). */
export function leadForm(api: Api, conversationId: string, track: Track, done: () => void): HTMLElement {
  const box = h("div", { class: "fd-lead" }, h("p", {}, t.leadPrompt));
  box.appendChild(
    contactForm(["email"], t.submit, async (values) => {
      const result = await api.post<{ lead_id: string }>("/leads", { email: values.email, conversation_id: conversationId });
      track("lead.submitted", { lead_id: result.lead_id });
      clear(box);
      box.appendChild(h("p", { class: "fd-lead-thanks" }, t.leadThanks));
      done();
    }),
  );
  return box;
}
