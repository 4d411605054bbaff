// Subscribers: a server-side paged, filtered and searchable list (only the page shown is ever fetched, so it
// stays fast at 10,000), whose query lives in the hash (#/subscribers?search=bob&page=2) so a reload or a
// shared link shows the same page; and the form that creates one.
import { useEffect, useState } from "preact/hooks";
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { currentRoute, href, navigate, type Route } from "../router";
import { Empty, ErrorNotice } from "../ui/feedback";
import { SelectField, TextField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Pager } from "../ui/pager";
import { Screen } from "../ui/screen";
import { Value, When } from "../ui/values";
import { SubscriberCreate } from "./subscriber_create";
import { STATUSES, StatusBadge, statusText, UsageBar, type SubscriberStatus } from "./subscriber_status";
import "./subscriber.css";

const text = defineText({
  en: { username: "Username", usage: "Data used", expires: "Valid until", note: "Note", expired: "Expiry",
        notExpired: "Not expired", isExpired: "Expired", searchHint: "Username, note or id", newSubscriber: "New subscriber",
        list: "Subscribers" },
  zh: { username: "用户名", usage: "已用流量", expires: "有效期至", note: "备注", expired: "到期",
        notExpired: "未过期", isExpired: "已过期", searchHint: "用户名、备注或 ID", newSubscriber: "新建订阅用户",
        list: "订阅用户" },
  ru: { username: "Имя пользователя", usage: "Использовано", expires: "Действует до", note: "Заметка", expired: "Срок",
        notExpired: "Не истёк", isExpired: "Истёк", searchHint: "Имя, заметка или ID", newSubscriber: "Новый подписчик",
        list: "Подписчики" },
});

const SIZE = 50;
/** how long typing pauses before the search goes to the server */
const DEBOUNCE_MS = 300;

interface ListQuery { search: string; status: string; expired: string; page: number }

function queryOf(route: Route): ListQuery {
  const q = route.query;
  const page = Number(q.get("page") ?? "1");
  return { search: q.get("search") ?? "", status: q.get("status") ?? "", expired: q.get("expired") ?? "",
           page: Number.isInteger(page) && page >= 1 ? page : 1 };
}

function go(q: ListQuery): void {
  navigate("/subscribers", { search: q.search, status: q.status, expired: q.expired, page: q.page > 1 ? q.page : null });
}

export function Subscribers({ route }: { route: Route }) {
  const t = useText(text);
  const tc = useText(common);
  const ts = useText(statusText);
  const q = queryOf(route);
  const [draft, setDraft] = useState(q.search);
  const [creating, setCreating] = useState(false);
  const canEdit = may(currentUser(), "subscribers.edit");
  // the search box follows the hash (back/forward), and the hash follows the box once typing pauses
  useEffect(() => setDraft(q.search), [q.search]);
  useEffect(() => {
    if (draft === q.search) return;
    // the query as it is when the timer fires: a filter chosen meanwhile is kept
    const timer = setTimeout(() => go({ ...queryOf(currentRoute()), search: draft.trim(), page: 1 }), DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [draft]);
  const list = useLoad(() => call(api.GET("/api/v1/clients", { params: { query: {
    page: q.page, size: SIZE, search: q.search || undefined,
    status: (q.status || undefined) as SubscriberStatus | undefined,
    expired: q.expired ? q.expired === "true" : undefined,
  } } })), [q.search, q.status, q.expired, q.page]);
  const rows = list.data?.items ?? [];
  return (
    <Screen title={t("list")} actions={canEdit && !creating && (
      <button type="button" class="primary" onClick={() => setCreating(true)}>{t("newSubscriber")}</button>
    )}>
      {creating && <SubscriberCreate onCancel={() => setCreating(false)}
                                     onCreated={(id) => navigate(`/subscribers/${id}`)} />}
      <form class="toolbar sub-filters" role="search" onSubmit={(e) => { e.preventDefault(); go({ ...q, search: draft.trim(), page: 1 }); }}>
        <TextField label={tc("search")} name="search" type="search" value={draft} onValue={setDraft}
                   placeholder={t("searchHint")} maxLength={200} data-testid="subscriber-search" />
        <SelectField label={tc("status")} name="status" value={q.status}
                     onValue={(v) => go({ ...q, status: v, page: 1 })}
                     options={[{ value: "", label: tc("all") }, ...STATUSES.map((s) => ({ value: s, label: ts(s) }))]} />
        <SelectField label={t("expired")} name="expired" value={q.expired}
                     onValue={(v) => go({ ...q, expired: v, page: 1 })}
                     options={[{ value: "", label: tc("all") }, { value: "false", label: t("notExpired") },
                               { value: "true", label: t("isExpired") }]} />
      </form>
      <ErrorNotice error={list.error} />
      <div class="table-wrap" aria-busy={list.loading}>
        <table data-testid="subscriber-table">
          <thead>
            <tr>
              <th scope="col">{t("username")}</th><th scope="col">{tc("status")}</th><th scope="col">{t("usage")}</th>
              <th scope="col">{t("expires")}</th><th scope="col">{t("note")}</th><th scope="col">{tc("created")}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={s.id} data-subscriber={s.username}>
                <td><a href={href(`/subscribers/${s.id}`)} translate={false}>{s.username}</a></td>
                <td><StatusBadge status={s.status} /></td>
                <td><UsageBar used={s.used_bytes} limit={s.data_limit_bytes} /></td>
                <td><When iso={s.expires_at} date /></td>
                <td><Value>{s.note}</Value></td>
                <td><When iso={s.created_at} date /></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {list.data && rows.length === 0 && <Empty />}
      {list.data && <Pager page={list.data.page} size={list.data.size} total={list.data.total}
                           onPage={(page) => go({ ...q, page })} />}
    </Screen>
  );
}
