// A subscriber's transfer per node and per day (GET /clients/{id}/usage): a uPlot chart with one line per
// node, and the same figures as a table (the chart is hidden from screen readers).
import { useMemo, useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { defineText, useText } from "../i18n/text";
import { useFormat } from "../i18n/format";
import { TimeChart, type Series } from "../ui/chart";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { SelectField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Bytes, Value } from "../ui/values";

const text = defineText({
  en: { title: "Usage per node and day", range: "Range", days: "Last {n} days", node: "Node", upload: "Upload",
        download: "Download", total: "Total", gone: "(deleted node)", none: "No traffic in this range." },
  zh: { title: "按节点和日期的流量", range: "时间范围", days: "最近 {n} 天", node: "节点", upload: "上传",
        download: "下载", total: "合计", gone: "（已删除的节点）", none: "此时间范围内没有流量。" },
  ru: { title: "Трафик по узлам и дням", range: "Период", days: "Последние {n} дн.", node: "Узел", upload: "Отдано",
        download: "Получено", total: "Всего", gone: "(удалённый узел)", none: "За этот период трафика нет." },
});

type Usage = components["schemas"]["SubscriberUsage"];
const RANGES = [7, 30, 90];
const COLOURS = ["#0b72e7", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#1098ad", "#e67700", "#5f3dc4"];
const DAY = 86_400;

/** Every day of the range (unix seconds of UTC midnight) and one series of total bytes per node. */
function chartOf(usage: Usage, bytes: (n: number) => string): { times: number[]; series: Series[] } {
  const start = Date.parse(`${usage.since}T00:00:00Z`) / 1000;
  const days = Math.floor((Date.now() / 1000 - start) / DAY) + 1; // since .. today (UTC), as the API counts
  const times = Array.from({ length: days }, (_, i) => start + i * DAY);
  const series = usage.nodes.map((n, i) => {
    const byDay = new Map(n.days.map((d) => [d.date, d.total_bytes]));
    return { label: n.node_name ?? n.node_id.slice(0, 8), stroke: COLOURS[i % COLOURS.length]!,
             values: times.map((s) => byDay.get(new Date(s * 1000).toISOString().slice(0, 10)) ?? 0), format: bytes };
  });
  return { times, series };
}

export function UsageChart({ id }: { id: string }) {
  const t = useText(text);
  const f = useFormat();
  const [days, setDays] = useState(30);
  const usage = useLoad(() => call(api.GET("/api/v1/clients/{id}/usage", { params: { path: { id },
                                                                                     query: { days } } })), [id, days]);
  const chart = useMemo(() => (usage.data ? chartOf(usage.data, f.bytes) : null), [usage.data, f]);
  return (
    <section class="card" aria-labelledby="usage-title" data-testid="subscriber-usage">
      <h2 id="usage-title">{t("title")}</h2>
      <div class="toolbar">
        <SelectField label={t("range")} name="days" value={String(days)} onValue={(v) => setDays(Number(v))}
                     options={RANGES.map((n) => ({ value: String(n), label: t("days", { n }) }))} />
      </div>
      <ErrorNotice error={usage.error} />
      {!usage.data ? <Loading /> : usage.data.nodes.length === 0 ? <Empty>{t("none")}</Empty> : (
        <>
          {chart && <TimeChart title={t("title")} times={chart.times} series={chart.series} />}
          <div class="table-wrap">
            <table>
              <thead><tr><th scope="col">{t("node")}</th><th scope="col">{t("upload")}</th>
                <th scope="col">{t("download")}</th><th scope="col">{t("total")}</th></tr></thead>
              <tbody>
                {usage.data.nodes.map((n) => (
                  <tr key={n.node_id}>
                    <td>{n.node_name ? <Value>{n.node_name}</Value> : <>{t("gone")} <Value mono>{n.node_id}</Value></>}</td>
                    <td><Bytes n={n.upload_bytes} /></td><td><Bytes n={n.download_bytes} /></td>
                    <td><Bytes n={n.upload_bytes + n.download_bytes} /></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
