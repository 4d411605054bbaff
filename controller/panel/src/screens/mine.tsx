// "My subscriptions": everything the signed-in account owns. A `user` account's lists answer with its own
// rows only; a staff account asks for its own with ?owner_id=<me>. Each subscription shows what its page at
// /sub/<short_uuid> shows (status, usage against the limit, expiry, QR codes, import links, steps); each
// WireGuard peer its QR code and .conf download.
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Screen } from "../ui/screen";
import { Num, Value, When } from "../ui/values";
import { PeerCard } from "./mine_peer";
import { SubscriptionAccess } from "./subscriber_access";
import { StatusBadge, UsageBar, type Subscriber } from "./subscriber_status";
import "./subscriber.css";

const text = defineText({
  en: { subscriptions: "V2Ray subscriptions", peers: "WireGuard peers", usage: "Data used", expires: "Valid until",
        daysLeft: "Days left", noSubscriptions: "You have no subscriptions.", noPeers: "You have no WireGuard peers." },
  zh: { subscriptions: "V2Ray 订阅", peers: "WireGuard 设备", usage: "已用流量", expires: "有效期至",
        daysLeft: "剩余天数", noSubscriptions: "您还没有订阅。", noPeers: "您还没有 WireGuard 设备。" },
  ru: { subscriptions: "Подписки V2Ray", peers: "Устройства WireGuard", usage: "Использовано", expires: "Действует до",
        daysLeft: "Осталось дней", noSubscriptions: "У вас нет подписок.", noPeers: "У вас нет устройств WireGuard." },
});

/** the most rows a person owns that this screen shows (a page of the API's largest size) */
const SIZE = 500;
const DAY_MS = 86_400_000;

export function Mine() {
  const t = useText(text);
  const tc = useText(common);
  const me = currentUser();
  const owner = me ? { owner_id: me.id, size: SIZE } : { size: SIZE };
  const subs = useLoad(async () => (may(me, "subscribers.view")
    ? (await call(api.GET("/api/v1/clients", { params: { query: owner } }))).items : []), [me?.id]);
  const peers = useLoad(async () => (may(me, "wireguard.view")
    ? (await call(api.GET("/api/v1/wireguard/clients", { params: { query: owner } }))).items : []), [me?.id]);
  return (
    <Screen title={tc("mine")}>
      <h2>{t("subscriptions")}</h2>
      <ErrorNotice error={subs.error} />
      {!subs.data ? !subs.error && <Loading /> : subs.data.length === 0 ? <Empty>{t("noSubscriptions")}</Empty>
        : subs.data.map((s) => <SubscriptionCard key={s.id} sub={s} />)}
      <h2>{t("peers")}</h2>
      <ErrorNotice error={peers.error} />
      {!peers.data ? !peers.error && <Loading /> : peers.data.length === 0 ? <Empty>{t("noPeers")}</Empty>
        : peers.data.map((p) => <PeerCard key={p.id} peer={p} />)}
    </Screen>
  );
}

function SubscriptionCard({ sub }: { sub: Subscriber }) {
  const t = useText(text);
  const tc = useText(common);
  const daysLeft = Math.max(0, Math.floor((new Date(sub.expires_at).getTime() - Date.now()) / DAY_MS));
  return (
    <article class="card mine-card" data-subscriber={sub.username} aria-labelledby={`sub-${sub.id}`}>
      <h3 id={`sub-${sub.id}`}><Value>{sub.username}</Value></h3>
      <dl class="facts">
        <dt>{tc("status")}</dt><dd data-testid="subscriber-status"><StatusBadge status={sub.status} /></dd>
        <dt>{t("usage")}</dt><dd><UsageBar used={sub.used_bytes} limit={sub.data_limit_bytes} /></dd>
        <dt>{t("expires")}</dt><dd><When iso={sub.expires_at} date /></dd>
        <dt>{t("daysLeft")}</dt><dd><Num n={daysLeft} /></dd>
      </dl>
      <SubscriptionAccess id={sub.id} url={sub.subscription_url} full />
    </article>
  );
}
