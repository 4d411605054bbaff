// A subscriber's status and usage as the list, the subscriber's screen and "mine" show them: the status
// translated (it is text, not data) with its tone, and the usage against the limit as a bar.
import type { components } from "../api/schema";
import { defineText, useText } from "../i18n/text";
import { Badge } from "../ui/screen";
import { Bytes } from "../ui/values";
import "./subscriber.css";

export type Subscriber = components["schemas"]["SubscriberOut"];
export type SubscriberStatus = Subscriber["status"];

export const STATUSES: SubscriberStatus[] = ["active", "blocked", "expired", "limited"];

export const statusText = defineText({
  en: { active: "Active", blocked: "Blocked", expired: "Expired", limited: "Data limit reached",
        of: "of", noLimit: "no limit", usage: "Data used" },
  zh: { active: "正常", blocked: "已停用", expired: "已过期", limited: "流量已用尽",
        of: "/", noLimit: "不限流量", usage: "已用流量" },
  ru: { active: "Активен", blocked: "Заблокирован", expired: "Истёк", limited: "Лимит исчерпан",
        of: "из", noLimit: "без лимита", usage: "Использовано" },
});

const TONES: Record<SubscriberStatus, "ok" | "warn" | "bad" | "idle"> = {
  active: "ok", blocked: "bad", expired: "idle", limited: "warn",
};

export function StatusBadge({ status }: { status: SubscriberStatus }) {
  const t = useText(statusText);
  return <span data-status={status}><Badge tone={TONES[status]}>{t(status)}</Badge></span>;
}

/** "1.2 GB of 10 GB" with a bar, or "1.2 GB (no limit)". */
export function UsageBar({ used, limit }: { used: number; limit: number | null }) {
  const t = useText(statusText);
  const share = limit ? Math.min(1, used / limit) : null;
  return (
    <span class="usage">
      <span>
        <Bytes n={used} /> {t("of")} {limit ? <Bytes n={limit} /> : t("noLimit")}
      </span>
      {share !== null && (
        <progress max={1000} value={Math.round(share * 1000)} aria-label={t("usage")} />
      )}
    </span>
  );
}
