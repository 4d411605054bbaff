// The operations log (the audit trail of every change): paged and filtered by the API, the filters kept in the
// hash (#/operations?actor=admin&result=fail&page=2) so a filtered view can be reloaded or shared.
import { useEffect, useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { navigate, type Route } from "../router";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { SelectField, TextField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Pager } from "../ui/pager";
import { Badge, Screen } from "../ui/screen";
import { Value, When } from "../ui/values";
import "./operations.css";

type Operation = components["schemas"]["OperationOut"];

const text = defineText({
  en: {
    actor: "Actor", action: "Action", actionHint: "Part of the method and path, or of the event name.",
    target: "Target", targetId: "Target ID", result: "Result", anyResult: "Any result", success: "Success",
    fail: "Failed", time: "Time", details: "Request", error: "Error", apply: "Apply filters",
    clear: "Clear", noOperations: "No operations match these filters.", requestId: "Request ID", noPayload: "No body",
  },
  zh: {
    actor: "操作者", action: "操作", actionHint: "请求方法和路径的一部分，或事件名称的一部分。",
    target: "对象", targetId: "对象 ID", result: "结果", anyResult: "任意结果", success: "成功",
    fail: "失败", time: "时间", details: "请求", error: "错误", apply: "应用筛选",
    clear: "清除", noOperations: "没有符合筛选条件的操作。", requestId: "请求 ID", noPayload: "无请求体",
  },
  ru: {
    actor: "Кто", action: "Действие", actionHint: "Часть метода и пути или названия события.",
    target: "Объект", targetId: "ID объекта", result: "Результат", anyResult: "Любой результат", success: "Успешно",
    fail: "Ошибка", time: "Время", details: "Запрос", error: "Ошибка", apply: "Применить",
    clear: "Сбросить", noOperations: "Нет операций, подходящих под фильтры.", requestId: "ID запроса", noPayload: "Без тела",
  },
});

const SIZE = 50;
const FILTERS = ["actor", "action", "target_id", "result"] as const;
type Filters = Record<(typeof FILTERS)[number], string>;

function filtersOf(route: Route): Filters {
  return { actor: route.query.get("actor") ?? "", action: route.query.get("action") ?? "",
           target_id: route.query.get("target_id") ?? "", result: route.query.get("result") ?? "" };
}

export function Operations({ route }: { route: Route }) {
  const t = useText(text);
  const c = useText(common);
  const applied = filtersOf(route);
  const page = Math.max(1, Number(route.query.get("page")) || 1);
  const [draft, setDraft] = useState<Filters>(applied);
  const key = route.query.toString();
  useEffect(() => setDraft(filtersOf(route)), [key]); // eslint-disable-line react-hooks/exhaustive-deps
  const list = useLoad(() => call(api.GET("/api/v1/operations", { params: { query: {
    page, size: SIZE, actor: applied.actor || null, action: applied.action || null,
    target_id: applied.target_id || null,
    result: applied.result === "success" || applied.result === "fail" ? applied.result : null } } })), [key]);
  const go = (f: Filters, p?: number) => navigate("/operations", { ...f, page: p && p > 1 ? p : undefined });
  const set = (name: keyof Filters) => (value: string) => setDraft({ ...draft, [name]: value });

  return (
    <Screen title={c("operations")}>
      <form class="toolbar ops-filters" role="search" onSubmit={(e) => { e.preventDefault(); go(draft); }}>
        <TextField label={t("actor")} name="actor" error={list.error} value={draft.actor} onValue={set("actor")} />
        <TextField label={t("action")} name="action" error={list.error} title={t("actionHint")} value={draft.action}
                   onValue={set("action")} />
        <TextField label={t("targetId")} name="target_id" error={list.error} value={draft.target_id}
                   onValue={set("target_id")} />
        <SelectField label={t("result")} name="result" value={draft.result}
                     onValue={(v) => go({ ...draft, result: v })}
                     options={[{ value: "", label: t("anyResult") }, { value: "success", label: t("success") },
                               { value: "fail", label: t("fail") }]} />
        <button type="submit" class="primary">{t("apply")}</button>
        <button type="button" onClick={() => go({ actor: "", action: "", target_id: "", result: "" })}>{t("clear")}</button>
      </form>
      <ErrorNotice error={list.error} />
      {!list.data ? (list.loading && <Loading />) : list.data.items.length === 0 ? <Empty>{t("noOperations")}</Empty> : (
        <>
          <div class="table-wrap">
            <table data-testid="operations">
              <thead><tr>
                <th>{t("time")}</th><th>{t("actor")}</th><th>{t("action")}</th><th>{t("target")}</th>
                <th>{t("result")}</th><th>{t("details")}</th>
              </tr></thead>
              <tbody>{list.data.items.map((op) => <Row key={op.id} op={op} />)}</tbody>
            </table>
          </div>
          <Pager page={page} size={SIZE} total={list.data.total} onPage={(p) => go(applied, p)} />
        </>
      )}
    </Screen>
  );
}

function Row({ op }: { op: Operation }) {
  const t = useText(text);
  const ok = op.result === "success";
  return (
    <tr data-operation={op.id}>
      <td class="ops-time"><When iso={op.created_at} /></td>
      <td data-col="actor" class="ops-actor"><Value>{op.actor}</Value></td>
      <td data-col="action"><Value mono>{op.action}</Value></td>
      <td><Value mono>{[op.target_type, op.target_id].filter(Boolean).join(" ") || "—"}</Value></td>
      <td>
        <Badge tone={ok ? "ok" : "bad"}>{ok ? t("success") : op.result === "fail" ? t("fail") : <Value>{op.result}</Value>}</Badge>
        {op.status_code !== null && <> <span class="muted"><Value>{op.status_code}</Value></span></>}
      </td>
      <td class="ops-detail">
        {op.error && <p class="ops-error"><span class="sr-only">{t("error")}: </span><Value>{op.error}</Value></p>}
        {op.payload === null || op.payload === undefined ? <span class="muted">{t("noPayload")}</span> : (
          <details>
            <summary>{t("details")}</summary>
            <pre translate={false}>{JSON.stringify(op.payload, null, 2)}</pre>
          </details>
        )}
        {op.request_id && <small class="muted">{t("requestId")}: <Value mono>{op.request_id}</Value></small>}
      </td>
    </tr>
  );
}
