// Safe Markdown: a small subset (paragraphs, line breaks, headings, lists, quotes, fenced and
// inline code, bold, italics, links, bare URLs) rendered straight into DOM nodes. No HTML string is
// ever parsed, so markup in the text stays text; links keep only http, https and mailto URLs and
// open in a new tab with rel="noopener noreferrer"; images become links, never loaded.
import { append, h } from "./dom";

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

export function safeUrl(raw: string): string | null {
  const text = raw.trim();
  if (!/^(https?:\/\/|mailto:)/i.test(text)) return null;
  try {
    const url = new URL(text);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

export function link(href: string, text: string | Node): HTMLAnchorElement {
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, text);
}

interface Token {
  index: number;
  length: number;
  render: () => Node;
}

const PATTERNS: Array<[RegExp, (m: RegExpExecArray, links: boolean) => Node | null]> = [
  [/`([^`\n]+)`/, (m) => h("code", {}, m[1])],
  [
    /!?\[([^\]\n]{1,500})\]\(\s*<?([^()\s<>]{1,2000})>?(?:\s+"[^"\n]*")?\s*\)/,
    (m, links) => {
      const href = links ? safeUrl(m[2]) : null;
      const text = inline(m[1], false);
      return href ? link(href, text) : text;
    },
  ],
  [/\*\*([^\n]+?)\*\*|__([^\n]+?)__/, (m, links) => h("strong", {}, inline(m[1] ?? m[2], links))],
  [/(^|[^\w*])\*([^*\s][^*\n]*?)\*|(^|[^\w])_([^_\s][^_\n]*?)_(?!\w)/, (m, links) => {
    const lead = m[1] ?? m[3] ?? "";
    const frag = document.createDocumentFragment();
    append(frag, lead, h("em", {}, inline(m[2] ?? m[4], links)));
    return frag;
  }],
  [/\b(?:https?:\/\/|mailto:)[^\s<>"'()]+[^\s<>"'().,;:!?]/i, (m, links) => {
    const href = links ? safeUrl(m[0]) : null;
    return href ? link(href, m[0]) : document.createTextNode(m[0]);
  }],
];

function nextToken(text: string, links: boolean): Token | null {
  let best: Token | null = null;
  for (const [pattern, render] of PATTERNS) {
    const m = pattern.exec(text);
    if (m && (best === null || m.index < best.index)) {
      best = { index: m.index, length: m[0].length, render: () => render(m, links) || document.createTextNode(m[0]) };
    }
  }
  return best;
}

/** Inline Markdown into a fragment; `links` is false inside link text (no nested links). */
export function inline(text: string, links = true): DocumentFragment {
  const out = document.createDocumentFragment();
  let rest = text.replace(/\\([\\`*_[\]()#+\-.!<>])/g, (_, c: string) => `\u0000${c.charCodeAt(0)}\u0000`);
  const restore = (s: string): string => s.replace(/\u0000(\d+)\u0000/g, (_, n: string) => String.fromCharCode(Number(n)));
  let guard = 0;
  while (rest && guard++ < 1000) {
    const token = nextToken(rest, links);
    if (!token) break;
    if (token.index > 0) out.appendChild(document.createTextNode(restore(rest.slice(0, token.index))));
    const node = token.render();
    restoreText(node, restore);
    out.appendChild(node);
    rest = rest.slice(token.index + token.length);
  }
  if (rest) out.appendChild(document.createTextNode(restore(rest)));
  return out;
}

function restoreText(node: Node, restore: (s: string) => string): void {
  if (node.nodeType === Node.TEXT_NODE) node.nodeValue = restore(node.nodeValue || "");
  node.childNodes.forEach((child) => restoreText(child, restore));
}

function paragraph(lines: string[]): HTMLElement {
  const p = h("p");
  lines.forEach((line, i) => {
    if (i) p.appendChild(h("br"));
    p.appendChild(inline(line));
  });
  return p;
}

const LIST_ITEM = /^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/;

/** Render Markdown `source` into a new fragment of block elements. */
export function renderMarkdown(source: string): DocumentFragment {
  const out = document.createDocumentFragment();
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  let para: string[] = [];
  let list: HTMLElement | null = null;
  const flush = (): void => {
    if (para.length) out.appendChild(paragraph(para));
    para = [];
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s{0,3}(```|~~~)/.exec(line);
    if (fence) {
      flush();
      const code: string[] = [];
      while (++i < lines.length && !lines[i].trim().startsWith(fence[1])) code.push(lines[i]);
      out.appendChild(h("pre", {}, h("code", {}, code.join("\n"))));
      continue;
    }
    if (!line.trim()) {
      flush();
      continue;
    }
    const heading = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      flush();
      out.appendChild(h("p", { class: "md-heading" }, h("strong", {}, inline(heading[1]))));
      continue;
    }
    const quote = /^\s{0,3}>\s?(.*)$/.exec(line);
    if (quote) {
      flush();
      out.appendChild(h("blockquote", {}, inline(quote[1])));
      continue;
    }
    const item = LIST_ITEM.exec(line);
    if (item) {
      const ordered = /\d/.test(item[1]);
      if (para.length) flush();
      const tag = ordered ? "OL" : "UL";
      if (!list || list.tagName !== tag) {
        list = h(ordered ? "ol" : "ul");
        out.appendChild(list);
      }
      list.appendChild(h("li", {}, inline(item[2])));
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) {
      const last = list.lastElementChild;
      if (last) append(last, " ", inline(line.trim()));
      continue;
    }
    list = null;
    para.push(line);
  }
  flush();
  return out;
}
