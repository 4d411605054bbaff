// Which language the panel speaks: the one the operator picked (kept in localStorage), else the browser's first
// language we have, else English. The three languages of the seeds' authors and of most operators.
import { createContext } from "preact";
import { useContext } from "preact/hooks";

export type Locale = "en" | "zh" | "ru";

export const LOCALES: readonly { code: Locale; name: string; tag: string }[] = [
  { code: "en", name: "English", tag: "en" },
  { code: "zh", name: "简体中文", tag: "zh-CN" },
  { code: "ru", name: "Русский", tag: "ru" },
];

const STORAGE_KEY = "vpnfleet.locale";

export function isLocale(value: unknown): value is Locale {
  return value === "en" || value === "zh" || value === "ru";
}

/** The locale to start with: ?lang=, the saved choice, then navigator.languages. */
export function detectLocale(): Locale {
  const query = new URLSearchParams(location.search).get("lang");
  if (isLocale(query)) return query;
  const saved = localStorage.getItem(STORAGE_KEY);
  if (isLocale(saved)) return saved;
  for (const lang of navigator.languages ?? [navigator.language]) {
    const base = lang.toLowerCase().split("-")[0];
    if (isLocale(base)) return base;
  }
  return "en";
}

export function saveLocale(locale: Locale): void {
  localStorage.setItem(STORAGE_KEY, locale);
  document.documentElement.lang = tagOf(locale);
}

export function tagOf(locale: Locale): string {
  return LOCALES.find((l) => l.code === locale)?.tag ?? "en";
}

export interface LocaleState {
  locale: Locale;
  setLocale: (locale: Locale) => void;
}

export const LocaleContext = createContext<LocaleState>({ locale: "en", setLocale: () => {} });

export function useLocale(): LocaleState {
  return useContext(LocaleContext);
}
