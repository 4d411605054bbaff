// Changing a subscriber's plan (PATCH: days from now or an end date, data limit, note) and extending it
// (POST extend). Only the fields filled in are sent; the API's 422 shows on the field it names.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { TextField } from "../ui/form";
import { numberOrNull, planText } from "./subscriber_create";
import type { Subscriber } from "./subscriber_status";

const text = defineText({
  en: { plan: "Plan", daysFromNow: "New plan: days from now", until: "Or: valid until (UTC)",
        planHint: "Fill in one of the two, or neither to keep the end date.", extend: "Extend",
        extendDays: "Days to add", extendHint: "Added to the end (or to today, if it has ended).", saved: "Saved." },
  zh: { plan: "套餐", daysFromNow: "新套餐：从现在起的天数", until: "或：有效期至（世界协调时间）",
        planHint: "二选一填写；都不填则保留原到期日。", extend: "续期",
        extendDays: "增加天数", extendHint: "从到期日起增加（已过期则从今天起）。", saved: "已保存。" },
  ru: { plan: "Тариф", daysFromNow: "Новый тариф: дней от сегодня", until: "Или: действует до (всемирное время)",
        planHint: "Заполните одно из двух или ничего, чтобы сохранить дату окончания.", extend: "Продлить",
        extendDays: "Добавить дней", extendHint: "Добавляется к дате окончания (или к сегодня, если срок истёк).",
        saved: "Сохранено." },
});

type Update = components["schemas"]["SubscriberUpdate"];
const GIB = 1024 ** 3;

/** A form's request, and whether the last one succeeded (its "Saved." note). */
function useSubmit(work: () => Promise<void>) {
  const { busy, error, run } = useAction();
  const [done, setDone] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setDone(false);
    setDone(await run(work));
  };
  return { busy, error, done, submit };
}

export function PlanForm({ subscriber, onChanged }: { subscriber: Subscriber; onChanged: (s: Subscriber) => void }) {
  const t = useText(text);
  const tp = useText(planText);
  const tc = useText(common);
  const [days, setDays] = useState("");
  const [until, setUntil] = useState("");
  const [limit, setLimit] = useState(
    subscriber.data_limit_bytes ? String(Math.round((subscriber.data_limit_bytes / GIB) * 1000) / 1000) : "");
  const [note, setNote] = useState(subscriber.note);
  const form = useSubmit(async () => {
    const body: Update = { data_limit_gb: numberOrNull(limit), note };
    const d = numberOrNull(days);
    if (d !== null) body.days = d;
    if (until) body.expires_at = `${until}T00:00:00Z`;
    onChanged(await call(api.PATCH("/api/v1/clients/{id}", { params: { path: { id: subscriber.id } }, body })));
    setDays("");
    setUntil("");
  });
  return (
    <form onSubmit={form.submit} aria-labelledby="plan-title" data-testid="plan-form">
      <h3 id="plan-title">{t("plan")}</h3>
      <TextField label={t("daysFromNow")} name="days" error={form.error} type="number" min={1} step={1} value={days}
                 onValue={setDays} hint={t("planHint")} />
      <TextField label={t("until")} name="expires_at" error={form.error} type="date" value={until} onValue={setUntil} />
      <TextField label={tp("dataLimit")} name="data_limit_gb" error={form.error} hint={tp("dataLimitHint")}
                 type="number" min={0} step="any" value={limit} onValue={setLimit} />
      <TextField label={tp("note")} name="note" error={form.error} value={note} onValue={setNote} maxLength={1000} />
      <ErrorNotice error={form.error} />
      {form.done && <p class="muted" role="status">{t("saved")}</p>}
      <button type="submit" class="primary" disabled={form.busy}>{tc("save")}</button>
    </form>
  );
}

export function ExtendForm({ id, onChanged }: { id: string; onChanged: (s: Subscriber) => void }) {
  const t = useText(text);
  const [days, setDays] = useState("30");
  const form = useSubmit(async () => {
    onChanged(await call(api.POST("/api/v1/clients/{id}/extend", { params: { path: { id } },
                                                                   body: { days: Number(days) } })));
  });
  return (
    <form onSubmit={form.submit} aria-labelledby="extend-title" data-testid="extend-form">
      <h3 id="extend-title">{t("extend")}</h3>
      <TextField label={t("extendDays")} name="days" error={form.error} type="number" min={1} step={1} value={days}
                 onValue={setDays} hint={t("extendHint")} required />
      <ErrorNotice error={form.error} />
      {form.done && <p class="muted" role="status">{t("saved")}</p>}
      <button type="submit" class="primary" disabled={form.busy}>{t("extend")}</button>
    </form>
  );
}
