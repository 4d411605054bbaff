// Numbers, byte sizes, dates and ages in the reader's locale (Intl: no catalog needed for these).
import { tagOf, useLocale, type Locale } from "./locale";

const UNITS = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte", "petabyte"] as const;

export interface Formatters {
  number: (n: number) => string;
  percent: (fraction: number) => string;
  bytes: (n: number) => string;
  rate: (bytesPerSecond: number) => string;
  dateTime: (iso: string | null | undefined) => string;
  date: (iso: string | null | undefined) => string;
  ago: (iso: string | null | undefined) => string;
}

const cache = new Map<Locale, Formatters>();

export function formatters(locale: Locale): Formatters {
  const hit = cache.get(locale);
  if (hit) return hit;
  const tag = tagOf(locale);
  const num = new Intl.NumberFormat(tag, { maximumFractionDigits: 1 });
  const pct = new Intl.NumberFormat(tag, { style: "percent", maximumFractionDigits: 0 });
  const unit = UNITS.map((u) => new Intl.NumberFormat(tag, { style: "unit", unit: u, unitDisplay: "short",
                                                             maximumFractionDigits: 1 }));
  const perSecond = UNITS.map((u) => new Intl.NumberFormat(tag, { style: "unit", unit: `${u}-per-second`,
                                                                  unitDisplay: "short", maximumFractionDigits: 1 }));
  const dateTime = new Intl.DateTimeFormat(tag, { dateStyle: "medium", timeStyle: "short" });
  const date = new Intl.DateTimeFormat(tag, { dateStyle: "medium" });
  const relative = new Intl.RelativeTimeFormat(tag, { numeric: "auto" });
  const scaled = (n: number, formats: Intl.NumberFormat[]) => {
    let i = 0;
    while (Math.abs(n) >= 1024 && i < formats.length - 1) { n /= 1024; i++; }
    return formats[i]!.format(n);
  };
  const parse = (iso: string | null | undefined) => (iso ? new Date(iso) : null);
  const made: Formatters = {
    number: (n) => num.format(n),
    percent: (f) => pct.format(f),
    bytes: (n) => scaled(n, unit),
    rate: (n) => scaled(n, perSecond),
    dateTime: (iso) => { const d = parse(iso); return d ? dateTime.format(d) : "—"; },
    date: (iso) => { const d = parse(iso); return d ? date.format(d) : "—"; },
    ago: (iso) => {
      const d = parse(iso);
      if (!d) return "—";
      const s = Math.round((d.getTime() - Date.now()) / 1000);
      const a = Math.abs(s);
      if (a < 60) return relative.format(s, "second");
      if (a < 3600) return relative.format(Math.round(s / 60), "minute");
      if (a < 86400) return relative.format(Math.round(s / 3600), "hour");
      return relative.format(Math.round(s / 86400), "day");
    },
  };
  cache.set(locale, made);
  return made;
}

export function useFormat(): Formatters {
  return formatters(useLocale().locale);
}
