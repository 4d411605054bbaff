// The state of a live stream (useStream), shown beside live data so an operator knows whether what they see is
// current. Fixed width: switching between states never moves the layout around it.
import type { StreamState } from "../api/live";
import { defineText, useText } from "../i18n/text";
import { Badge } from "./screen";
import "./stream_state.css";

const text = defineText({
  en: { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", closed: "Not live",
        label: "Live updates" },
  zh: { connecting: "正在连接…", live: "实时", reconnecting: "正在重新连接…", closed: "未实时更新",
        label: "实时更新" },
  ru: { connecting: "Подключение…", live: "В реальном времени", reconnecting: "Переподключение…",
        closed: "Не обновляется", label: "Обновления в реальном времени" },
});

const TONE: Record<StreamState, "ok" | "warn" | "bad" | "idle"> = {
  connecting: "idle", live: "ok", reconnecting: "warn", closed: "idle",
};

export function StreamBadge({ state }: { state: StreamState }) {
  const t = useText(text);
  return (
    <span class="stream-state" role="status" aria-label={t("label")} data-testid="stream-state" data-state={state}>
      <Badge tone={TONE[state]}>{t(state)}</Badge>
    </span>
  );
}
