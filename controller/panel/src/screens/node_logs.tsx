// A node's live log tail: GET /nodes/{id}/logs?follow=true read as SSE, filtered by the server (level, search:
// changing them reopens the stream, which starts with the recent matching lines). Pause holds new lines
// without showing them until resumed; at most MAX_LINES are kept.
import { useEffect, useRef, useState } from "preact/hooks";
import { useStream } from "../api/live";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { LogView, type LogEntry } from "../ui/log_view";
import { StreamBadge } from "../ui/stream_state";

type LogLine = components["schemas"]["LogLine"];
const LEVELS = ["debug", "info", "warning", "error", "critical"] as const;
type Level = (typeof LEVELS)[number];

export const MAX_LINES = 1000;

const text = defineText({
  en: { title: "Logs", level: "Minimum level", debug: "Debug", info: "Info", warning: "Warning", error: "Error",
        critical: "Critical", search: "Contains", searchHint: "Text in the message", apply: "Apply",
        pause: "Pause", resume: "Resume", held: "{count} new lines held while paused", lines: "Log lines of the node",
        empty: "No lines yet.", clear: "Clear" },
  zh: { title: "日志", level: "最低级别", debug: "调试", info: "信息", warning: "警告", error: "错误",
        critical: "严重", search: "包含", searchHint: "消息中的文字", apply: "应用",
        pause: "暂停", resume: "继续", held: "暂停期间收到 {count} 行新日志", lines: "节点的日志",
        empty: "暂无日志。", clear: "清空" },
  ru: { title: "Журнал", level: "Минимальный уровень", debug: "Отладка", info: "Инфо", warning: "Предупреждение",
        error: "Ошибка", critical: "Критично", search: "Содержит", searchHint: "Текст в сообщении",
        apply: "Применить", pause: "Пауза", resume: "Продолжить", held: "Новых строк во время паузы: {count}",
        lines: "Строки журнала узла", empty: "Строк пока нет.", clear: "Очистить" },
});

const keyOf = (l: Pick<LogLine, "time" | "source" | "message">) => `${l.time}\u0000${l.source}\u0000${l.message}`;

export function NodeLogs({ id }: { id: string }) {
  const t = useText(text);
  const c = useText(common);
  const [level, setLevel] = useState<Level>("info");
  const [search, setSearch] = useState("");
  const [typed, setTyped] = useState("");
  const [lines, setLines] = useState<LogEntry[]>([]);
  /** paused: the seq of the last line shown; later lines wait */
  const [pausedAt, setPausedAt] = useState<number | null>(null);
  const seq = useRef(0);
  const seen = useRef(new Set<string>());
  const pending = useRef<LogEntry[]>([]);
  const frame = useRef<number | undefined>(undefined);

  const query = new URLSearchParams({ follow: "true", level, ...(search ? { search } : {}) });
  const path = `/api/v1/nodes/${encodeURIComponent(id)}/logs?${query}`;
  // a new filter is a new stream: its first lines are the recent matching ones
  useEffect(() => { setLines([]); seen.current = new Set(); pending.current = []; }, [path]);
  useEffect(() => () => cancelAnimationFrame(frame.current ?? 0), []);

  const flush = () => {
    frame.current = undefined;
    const batch = pending.current;
    pending.current = [];
    setLines((old) => {
      const next = old.concat(batch);
      const cut = next.length - MAX_LINES;
      if (cut > 0) for (const l of next.slice(0, cut)) seen.current.delete(keyOf(l));
      return cut > 0 ? next.slice(cut) : next;
    });
  };
  const state = useStream(path, (event, data) => {
    const line = (data as { log?: LogLine }).log;
    if (event !== "log" || !line) return;
    // a reconnect sends the recent lines again
    const key = keyOf(line);
    if (seen.current.has(key)) return;
    seen.current.add(key);
    pending.current.push({ seq: ++seq.current, time: line.time, level: line.level, source: line.source,
                           message: line.message });
    frame.current ??= requestAnimationFrame(flush);
  });

  const shown = pausedAt === null ? lines : lines.filter((l) => l.seq <= pausedAt);
  const held = lines.length - shown.length;
  return (
    <section class="card node-logs" aria-labelledby="node-logs-title">
      <div class="section-head">
        <h2 id="node-logs-title">{t("title")}</h2>
        <StreamBadge state={state} />
        <span class="muted held" aria-live="polite" data-testid="held">{pausedAt !== null ? t("held", { count: held }) : ""}</span>
      </div>
      <form class="toolbar" role="search" onSubmit={(e) => { e.preventDefault(); setSearch(typed.trim()); }}>
        <div class="field">
          <label for="log-level">{t("level")}</label>
          <select id="log-level" value={level} data-testid="log-level"
                  onChange={(e) => setLevel((e.currentTarget as HTMLSelectElement).value as Level)}>
            {LEVELS.map((l) => <option key={l} value={l}>{t(l)}</option>)}
          </select>
        </div>
        <div class="field">
          <label for="log-search">{t("search")}</label>
          <input id="log-search" type="search" value={typed} placeholder={t("searchHint")} maxLength={200}
                 data-testid="log-search" onInput={(e) => setTyped((e.currentTarget as HTMLInputElement).value)} />
        </div>
        <button type="submit">{t("apply")}</button>
        <button type="button" aria-pressed={pausedAt !== null} data-testid="log-pause"
                onClick={() => setPausedAt(pausedAt === null ? seq.current : null)}>
          {pausedAt === null ? t("pause") : t("resume")}
        </button>
        <button type="button" onClick={() => { setLines([]); setPausedAt((p) => (p === null ? null : seq.current)); }}>
          {t("clear")}
        </button>
      </form>
      <LogView lines={shown} label={t("lines")} empty={c("empty")} />
    </section>
  );
}
