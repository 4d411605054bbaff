// Every string a screen shows lives in that screen's catalog, in all three languages. defineText's type makes
// a key missing from zh or ru a compile error (tsc runs in `make test`), so no screen can ship half translated;
// tests/browser walks every screen in zh and ru to catch text that bypasses a catalog.
import { useLocale, type Locale } from "./locale";

export type Strings = Record<string, string>;
export type Catalog<E extends Strings> = { en: E } & Record<Exclude<Locale, "en">, { [K in keyof E]: string }>;

export function defineText<E extends Strings>(catalog: Catalog<E>): Catalog<E> {
  return catalog;
}

export type Translate<E extends Strings> = (key: keyof E & string, vars?: Record<string, string | number>) => string;

/** `{name}` in a string is replaced by vars.name. */
export function translate<E extends Strings>(catalog: Catalog<E>, locale: Locale): Translate<E> {
  const table = catalog[locale] as Record<string, string>;
  return (key, vars) => {
    const text = table[key] ?? catalog.en[key] ?? key;
    return vars ? text.replace(/\{(\w+)\}/g, (m, name: string) => (name in vars ? String(vars[name]) : m)) : text;
  };
}

/** The translate function of a catalog in the current locale. */
export function useText<E extends Strings>(catalog: Catalog<E>): Translate<E> {
  const { locale } = useLocale();
  return translate(catalog, locale);
}
