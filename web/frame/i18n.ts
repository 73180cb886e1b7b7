// Picks the frame's language (the loader's choice, else the browser's, else the site's) and
// formats strings. The strings themselves live in web/i18n/<lang>.ts, one file per language.
import { frame as en, type FrameStrings } from "../i18n/en";
import { frame as ru } from "../i18n/ru";

const LANGUAGES: Record<string, FrameStrings> = { en, ru };

export let t: FrameStrings = en;
export let lang = "en";

export function chooseLanguage(...candidates: Array<string | null | undefined>): string {
  for (const candidate of candidates) {
    const code = (candidate || "").slice(0, 2).toLowerCase();
    if (LANGUAGES[code]) {
      lang = code;
      t = LANGUAGES[code];
      document.documentElement.lang = code;
      return code;
    }
  }
  return lang;
}

export function format(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (_, key: string) => String(values[key] ?? ""));
}

/** A countdown like "45 s" or "59:07" (minutes and seconds) or "1:02:03". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return lang === "ru" ? `${s} с` : `${s} s`;
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}
