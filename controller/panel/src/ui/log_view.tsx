// Log lines in a fixed-height scrolling box (a `log` live region). It follows the newest line while the reader
// is at the bottom and stays put when they have scrolled up to read. Lines are data: never translated.
import { useEffect, useLayoutEffect, useMemo, useRef } from "preact/hooks";
import { tagOf, useLocale } from "../i18n/locale";
import "./log_view.css";

export interface LogEntry {
  /** unique and increasing: the order lines arrived in */
  seq: number;
  time: string;
  level: string;
  source: string;
  message: string;
}

const FOLLOW_SLACK_PX = 24;

export function LogView({ lines, label, empty }: { lines: LogEntry[]; label: string; empty: string }) {
  const box = useRef<HTMLDivElement>(null);
  const follow = useRef(true);
  const { locale } = useLocale();
  // log lines want the second: the panel's shared date format stops at minutes
  const clock = useMemo(() => new Intl.DateTimeFormat(tagOf(locale), { dateStyle: "short", timeStyle: "medium" }),
                        [locale]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const onScroll = () => { follow.current = el.scrollHeight - el.scrollTop - el.clientHeight < FOLLOW_SLACK_PX; };
    el.addEventListener("scroll", onScroll, { passive: true });
    return () => el.removeEventListener("scroll", onScroll);
  }, []);
  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow.current) el.scrollTop = el.scrollHeight;
  }, [lines]);
  return (
    // focusable: a keyboard reader can scroll it (axe: scrollable-region-focusable)
    <div ref={box} class="log log-view" role="log" aria-label={label} tabIndex={0} data-testid="log-lines">
      {lines.length === 0 && <p class="muted log-empty">{empty}</p>}
      {lines.map((l) => (
        <p key={l.seq} translate={false} class={`log-line level-${l.level}`} data-level={l.level}>
          <time dateTime={l.time} class="log-time">{clock.format(new Date(l.time))}</time>{" "}
          <span class="log-level">{l.level.toUpperCase()}</span>{" "}
          <span class="log-source">{l.source}</span>{" "}
          <span class="log-message">{l.message}</span>
        </p>
      ))}
    </div>
  );
}
