// The form that creates a subscriber (POST /api/v1/clients): username, length in days, data limit, note and,
// for operators who may see accounts, the `user` account that owns it. The API's 422 shows on its field.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { Field, FormButtons, TextField } from "../ui/form";
import { useLoad } from "../ui/load";

export const planText = defineText({
  en: { username: "Username", days: "Days", dataLimit: "Data limit (GiB)", dataLimitHint: "Empty or 0: no limit",
        note: "Note", owner: "Owner account", noOwner: "No owner", title: "New subscriber",
        usernameHint: "3–64 letters, digits, _ . @ -" },
  zh: { username: "用户名", days: "天数", dataLimit: "流量上限（GB）", dataLimitHint: "留空或 0：不限流量",
        note: "备注", owner: "所属账户", noOwner: "无", title: "新建订阅用户",
        usernameHint: "3–64 个字母、数字或 _ . @ -" },
  ru: { username: "Имя пользователя", days: "Дней", dataLimit: "Лимит трафика (ГиБ)",
        dataLimitHint: "Пусто или 0: без лимита", note: "Заметка", owner: "Владелец", noOwner: "Без владельца",
        title: "Новый подписчик", usernameHint: "3–64 символа: буквы, цифры, _ . @ -" },
});

/** A number field's text as the API takes it: empty is "not given", anything else a number (NaN is sent as
 *  is so that the API's 422 names the field). */
export function numberOrNull(value: string): number | null {
  return value.trim() === "" ? null : Number(value);
}

export function SubscriberCreate({ onCreated, onCancel }: { onCreated: (id: string) => void; onCancel: () => void }) {
  const t = useText(planText);
  const tc = useText(common);
  const [username, setUsername] = useState("");
  const [days, setDays] = useState("30");
  const [limit, setLimit] = useState("");
  const [note, setNote] = useState("");
  const [owner, setOwner] = useState("");
  const { busy, error, run } = useAction();
  const seeAccounts = may(currentUser(), "users.view");
  const owners = useLoad(async () => (seeAccounts ? (await call(api.GET("/api/v1/users", { params: { query: {
    role: "user", size: 500, sort: "username", order: "asc" } } }))).items : []), [seeAccounts]);
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const made = await call(api.POST("/api/v1/clients", { body: {
        username, days: numberOrNull(days) ?? undefined, data_limit_gb: numberOrNull(limit), note,
        owner_id: owner ? Number(owner) : null,
      } }));
      onCreated(made.id);
    });
  };
  return (
    <form class="card sub-create" onSubmit={submit} data-testid="subscriber-create" aria-labelledby="sub-create-title">
      <h2 id="sub-create-title">{t("title")}</h2>
      <TextField label={t("username")} name="username" error={error} hint={t("usernameHint")} value={username}
                 onValue={setUsername} required autoComplete="off" />
      <div class="row">
        <TextField label={t("days")} name="days" error={error} type="number" min={1} step={1} value={days}
                   onValue={setDays} required />
        <TextField label={t("dataLimit")} name="data_limit_gb" error={error} hint={t("dataLimitHint")} type="number"
                   min={0} step="any" value={limit} onValue={setLimit} />
      </div>
      <TextField label={t("note")} name="note" error={error} value={note} onValue={setNote} maxLength={1000} />
      {seeAccounts && (
        <Field label={t("owner")} name="owner_id" error={error}>
          {(p) => (
            <select {...p} value={owner} onChange={(e) => setOwner((e.currentTarget as HTMLSelectElement).value)}>
              <option value="">{t("noOwner")}</option>
              {(owners.data ?? []).map((u) => (
                <option key={u.id} value={String(u.id)} translate={false}>{u.username}</option>
              ))}
            </select>
          )}
        </Field>
      )}
      <ErrorNotice error={error} />
      <FormButtons onCancel={onCancel} submit={tc("create")} busy={busy} />
    </form>
  );
}
