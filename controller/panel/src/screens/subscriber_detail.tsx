// One subscriber: status and plan, the changes an operator makes (plan, extend, block/unblock, rotate, reset
// usage, delete: each destructive one confirmed), usage per node and per day, and the subscription URL with
// its QR code and import links.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { href, navigate } from "../router";
import { ConfirmButton } from "../ui/confirm";
import { ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Screen } from "../ui/screen";
import { Num, Value, When } from "../ui/values";
import { SubscriptionAccess } from "./subscriber_access";
import { ExtendForm, PlanForm } from "./subscriber_plan";
import { StatusBadge, UsageBar, type Subscriber } from "./subscriber_status";
import { UsageChart } from "./subscriber_usage";
import "./subscriber.css";

const text = defineText({
  en: {
    title: "Subscriber", facts: "Subscription", usage: "Data used", since: "Counted since",
    expires: "Valid until", daysLeft: "Days left", nodes: "Nodes", regions: "Regions", every: "Every one",
    note: "Note", owner: "Owner account", shared: "Legacy shared id", changes: "Changes",
    block: "Block", blockTitle: "Block {name}?", blockBody: "They are cut off on every node until unblocked.",
    unblock: "Unblock", rotate: "Rotate credentials", rotateTitle: "Rotate the credentials of {name}?",
    rotateBody: "New credentials and a new subscription URL are made; the old ones stop working on every node at once. Every app of this subscriber must import the new URL (or scan the new QR code) to connect again.",
    resetUsage: "Reset usage", resetTitle: "Reset the usage of {name}?",
    resetBody: "The data counted against the limit starts from zero again; the history is kept.",
    deleteTitle: "Delete {name}?", deleteBody: "Their access ends on every node and the record and usage are deleted. This cannot be undone.",
    subscription: "Subscription URL and import", back: "All subscribers",
  },
  zh: {
    title: "订阅用户", facts: "订阅", usage: "已用流量", since: "计数起始",
    expires: "有效期至", daysLeft: "剩余天数", nodes: "节点", regions: "区域", every: "全部",
    note: "备注", owner: "所属账户", shared: "旧版共享 ID", changes: "变更",
    block: "停用", blockTitle: "停用 {name}？", blockBody: "该用户将在所有节点上被断开，直到重新启用。",
    unblock: "重新启用", rotate: "重置凭据", rotateTitle: "重置 {name} 的凭据？",
    rotateBody: "将生成新的凭据和新的订阅链接；旧的凭据和链接会立即在所有节点上失效。该用户的每个应用都必须重新导入新链接（或扫描新二维码）才能再次连接。",
    resetUsage: "重置流量", resetTitle: "重置 {name} 的流量？",
    resetBody: "计入上限的流量将从零重新开始；历史记录会保留。",
    deleteTitle: "删除 {name}？", deleteBody: "该用户在所有节点上的访问将终止，记录和流量数据将被删除。此操作无法撤销。",
    subscription: "订阅链接与导入", back: "全部订阅用户",
  },
  ru: {
    title: "Подписчик", facts: "Подписка", usage: "Использовано", since: "Учёт с",
    expires: "Действует до", daysLeft: "Осталось дней", nodes: "Узлы", regions: "Регионы", every: "Все",
    note: "Заметка", owner: "Владелец", shared: "Старый общий ID", changes: "Изменения",
    block: "Заблокировать", blockTitle: "Заблокировать {name}?",
    blockBody: "Доступ прекращается на всех узлах до разблокировки.",
    unblock: "Разблокировать", rotate: "Сменить учётные данные", rotateTitle: "Сменить учётные данные {name}?",
    rotateBody: "Будут созданы новые учётные данные и новая ссылка подписки; старые сразу перестанут работать на всех узлах. Каждое приложение подписчика должно импортировать новую ссылку (или отсканировать новый QR-код), чтобы снова подключиться.",
    resetUsage: "Сбросить трафик", resetTitle: "Сбросить трафик {name}?",
    resetBody: "Учёт трафика для лимита начнётся с нуля; история сохранится.",
    deleteTitle: "Удалить {name}?", deleteBody: "Доступ прекращается на всех узлах, запись и статистика удаляются. Это действие нельзя отменить.",
    subscription: "Ссылка подписки и импорт", back: "Все подписчики",
  },
});

const DAY_MS = 86_400_000;

export function SubscriberDetail({ id }: { id: string }) {
  const t = useText(text);
  const tc = useText(common);
  const canEdit = may(currentUser(), "subscribers.edit");
  const sub = useLoad(() => call(api.GET("/api/v1/clients/{id}", { params: { path: { id } } })), [id]);
  const [actionError, setActionError] = useState<unknown>(null);
  const s = sub.data;
  if (!s) {
    return <Screen title={t("title")}>{sub.error ? <ErrorNotice error={sub.error} /> : <Loading />}</Screen>;
  }
  const name = s.username;
  const changed = (next: Subscriber) => sub.setData(() => next);
  const path = { params: { path: { id } } };
  const unblock = async () => {
    setActionError(null);
    try { changed(await call(api.POST("/api/v1/clients/{id}/unblock", path))); } catch (e) { setActionError(e); }
  };
  const daysLeft = Math.max(0, Math.floor((new Date(s.expires_at).getTime() - Date.now()) / DAY_MS));
  return (
    <Screen title={t("title")}
            actions={<a href={href("/subscribers")}>{t("back")}</a>}>
      <p class="sub-heading"><strong><Value>{name}</Value></strong></p>
      <div class="grid2">
        <section class="card" aria-labelledby="sub-facts">
          <h2 id="sub-facts">{t("facts")}</h2>
          <dl class="facts" data-testid="subscriber-facts">
            <dt>{tc("status")}</dt><dd data-testid="subscriber-status"><StatusBadge status={s.status} /></dd>
            <dt>{t("usage")}</dt>
            <dd><UsageBar used={s.used_bytes} limit={s.data_limit_bytes} /></dd>
            {s.usage_reset_at && <><dt>{t("since")}</dt><dd><When iso={s.usage_reset_at} /></dd></>}
            <dt>{t("expires")}</dt><dd><When iso={s.expires_at} /></dd>
            <dt>{t("daysLeft")}</dt><dd><Num n={daysLeft} /></dd>
            <dt>{t("nodes")}</dt><dd>{s.node_ids ? <Value mono>{s.node_ids.join(", ")}</Value> : t("every")}</dd>
            <dt>{t("regions")}</dt><dd>{s.regions ? <Value>{s.regions.join(", ")}</Value> : t("every")}</dd>
            {s.note && <><dt>{t("note")}</dt><dd><Value>{s.note}</Value></dd></>}
            {s.owner_id !== null && <><dt>{t("owner")}</dt><dd><Owner id={s.owner_id} /></dd></>}
            {s.shared_credential && <><dt>{t("shared")}</dt><dd>{tc("yes")}</dd></>}
            <dt>{tc("created")}</dt><dd><When iso={s.created_at} /></dd>
          </dl>
        </section>
        <section class="card" aria-labelledby="sub-link">
          <h2 id="sub-link">{t("subscription")}</h2>
          <SubscriptionAccess id={s.id} url={s.subscription_url} />
        </section>
      </div>
      {canEdit && (
        <section class="card" aria-labelledby="sub-changes">
          <h2 id="sub-changes">{t("changes")}</h2>
          <div class="sub-actions">
            {s.status === "blocked"
              ? <button type="button" onClick={unblock} data-testid="unblock">{t("unblock")}</button>
              : <ConfirmButton label={t("block")} title={t("blockTitle", { name })} confirmLabel={t("block")} danger
                               onConfirm={async () => changed(await call(api.POST("/api/v1/clients/{id}/block", path)))}>
                  <p>{t("blockBody")}</p>
                </ConfirmButton>}
            <ConfirmButton label={t("rotate")} title={t("rotateTitle", { name })} confirmLabel={t("rotate")} danger
                           onConfirm={async () => { await call(api.POST("/api/v1/clients/{id}/config/rotate", path));
                                                    await sub.reload(); }}>
              <p class="notice" role="note">{t("rotateBody")}</p>
            </ConfirmButton>
            <ConfirmButton label={t("resetUsage")} title={t("resetTitle", { name })} confirmLabel={t("resetUsage")}
                           onConfirm={async () => changed(await call(api.POST("/api/v1/clients/{id}/usage/reset", path)))}>
              <p>{t("resetBody")}</p>
            </ConfirmButton>
            <ConfirmButton label={tc("delete")} title={t("deleteTitle", { name })} confirmLabel={tc("delete")} danger
                           onConfirm={async () => { await call(api.DELETE("/api/v1/clients/{id}", path));
                                                    navigate("/subscribers"); }}>
              <p>{t("deleteBody")}</p>
            </ConfirmButton>
          </div>
          <ErrorNotice error={actionError} />
          <div class="sub-forms">
            <PlanForm subscriber={s} onChanged={changed} />
            <ExtendForm id={s.id} onChanged={changed} />
          </div>
        </section>
      )}
      <UsageChart id={s.id} />
    </Screen>
  );
}

/** The owner's username where the account may read accounts (users.view), else its id. */
function Owner({ id }: { id: number }) {
  const readable = may(currentUser(), "users.view");
  const account = useLoad(async () => (readable ? call(api.GET("/api/v1/users/{id}", { params: { path: { id } } }))
                                                : null), [id, readable]);
  return account.data ? <Value>{account.data.username}</Value> : <Num n={id} />;
}
