// A node's machine metrics: the latest sample, and CPU, memory and network over a chosen range (1 h to 7 d),
// from GET /nodes/{id}/metrics. Each range asks for an interval that keeps the chart under ~200 points.
import { useMemo, useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { useFormat } from "../i18n/format";
import { tagOf, useLocale } from "../i18n/locale";
import { defineText, useText } from "../i18n/text";
import { TimeChart, type Series } from "../ui/chart";
import { ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Bytes, Num, Rate } from "../ui/values";

type Metrics = components["schemas"]["NodeMetrics"];
type Point = components["schemas"]["MetricPoint"];

/** range -> [seconds back, seconds per point] */
const RANGES = { "1h": [3600, 60], "6h": [6 * 3600, 300], "24h": [86400, 900], "7d": [7 * 86400, 3600] } as const;
type Range = keyof typeof RANGES;

const text = defineText({
  en: { title: "Metrics", range: "Range", "1h": "Last hour", "6h": "Last 6 hours", "24h": "Last 24 hours",
        "7d": "Last 7 days", cpu: "CPU", memory: "Memory used", network: "Network", rx: "Received", tx: "Sent",
        now: "Now", load: "Load average", uptime: "Uptime", trafficNow: "Traffic now (last interval)",
        noSample: "No sample since the controller started.", noHistory: "No metrics in this range yet.",
        disk: "Disk used" },
  zh: { title: "指标", range: "时间范围", "1h": "最近 1 小时", "6h": "最近 6 小时", "24h": "最近 24 小时",
        "7d": "最近 7 天", cpu: "CPU", memory: "已用内存", network: "网络", rx: "接收", tx: "发送",
        now: "当前", load: "平均负载", uptime: "运行时间", trafficNow: "当前流量（最近一个间隔）",
        noSample: "控制器启动以来尚无采样。", noHistory: "此时间范围内暂无指标。", disk: "已用磁盘" },
  ru: { title: "Метрики", range: "Период", "1h": "Последний час", "6h": "Последние 6 часов",
        "24h": "Последние 24 часа", "7d": "Последние 7 дней", cpu: "CPU", memory: "Занято памяти", network: "Сеть",
        rx: "Получено", tx: "Отправлено", now: "Сейчас", load: "Средняя нагрузка", uptime: "Время работы",
        trafficNow: "Трафик сейчас (последний интервал)", noSample: "С запуска контроллера замеров нет.",
        noHistory: "За этот период метрик пока нет.", disk: "Занято на диске" },
});

export function NodeMetrics({ id }: { id: string }) {
  const t = useText(text);
  const c = useText(common);
  const [range, setRange] = useState<Range>("1h");
  const metrics = useLoad(() => {
    const [back, interval] = RANGES[range];
    const end = new Date();
    const start = new Date(end.getTime() - back * 1000);
    return call(api.GET("/api/v1/nodes/{id}/metrics", { params: { path: { id }, query: {
      start_time: start.toISOString(), end_time: end.toISOString(), interval } } }));
  }, [id, range]);
  return (
    <section class="card node-metrics" aria-labelledby="node-metrics-title">
      <div class="section-head">
        <h2 id="node-metrics-title">{t("title")}</h2>
        <label class="inline-field">
          <span>{t("range")}</span>
          <select value={range} data-testid="metrics-range"
                  onChange={(e) => setRange((e.currentTarget as HTMLSelectElement).value as Range)}>
            {(Object.keys(RANGES) as Range[]).map((r) => <option key={r} value={r}>{t(r)}</option>)}
          </select>
        </label>
        <button type="button" onClick={() => void metrics.reload()}>{c("refresh")}</button>
      </div>
      <ErrorNotice error={metrics.error} />
      {metrics.data ? <MetricsBody data={metrics.data} /> : !metrics.error && <Loading />}
    </section>
  );
}

function MetricsBody({ data }: { data: Metrics }) {
  const t = useText(text);
  const f = useFormat();
  const { locale } = useLocale();
  const cur = data.current;
  const last = data.history[data.history.length - 1];
  const charts = useMemo(() => {
    // the chosen range's ends as empty points: the axis spans the range asked for, not just the data there is
    const times = [Date.parse(data.start_time) / 1000, ...data.history.map((p) => Date.parse(p.time) / 1000),
                   Date.parse(data.end_time) / 1000];
    const values = (pick: (p: Point) => number) => [null, ...data.history.map(pick), null];
    const pct = (v: number) => f.percent(v / 100);
    const cpu: Series[] = [{ label: t("cpu"), stroke: "#2f81f7", values: values((p) => p.cpu_avg), format: pct }];
    const mem: Series[] = [{ label: t("memory"), stroke: "#a371f7", values: values((p) => p.mem_used_avg),
                             format: f.bytes }];
    const net: Series[] = [
      { label: t("rx"), stroke: "#3fb950", values: values((p) => p.net_rx_bps), format: f.rate },
      { label: t("tx"), stroke: "#e3761b", values: values((p) => p.net_tx_bps), format: f.rate },
    ];
    return { times, cpu, mem, net };
  }, [data, locale]);
  const uptime = (seconds: number) => {
    const long = seconds >= 2 * 86400;
    return new Intl.NumberFormat(tagOf(locale), { style: "unit", unit: long ? "day" : "hour", unitDisplay: "short",
                                                  maximumFractionDigits: 1 }).format(seconds / (long ? 86400 : 3600));
  };
  return (
    <>
      {cur ? (
        <dl class="facts metrics-now" data-testid="metrics-now">
          <dt>{t("cpu")}</dt><dd><span translate={false} class="num">{f.percent(cur.cpu_percent / 100)}</span></dd>
          <dt>{t("memory")}</dt><dd><Bytes n={cur.memory.used} /> / <Bytes n={cur.memory.total} /></dd>
          <dt>{t("disk")}</dt><dd><Bytes n={cur.disk.used} /> / <Bytes n={cur.disk.total} /></dd>
          <dt>{t("load")}</dt><dd><span translate={false} class="num">{cur.load_average.map((l) => f.number(l)).join(" · ")}</span></dd>
          <dt>{t("uptime")}</dt><dd><span translate={false} class="num">{uptime(cur.uptime_seconds)}</span></dd>
          <dt>{t("trafficNow")}</dt>
          <dd>{last ? <>↓ <Rate n={last.net_rx_bps} /> · ↑ <Rate n={last.net_tx_bps} /></> : <Num n={null} />}</dd>
        </dl>
      ) : <p class="muted">{t("noSample")}</p>}
      {data.history.length ? (
        <div class="grid2 node-charts">
          <TimeChart title={t("cpu")} times={charts.times} series={charts.cpu} height={180} />
          <TimeChart title={t("memory")} times={charts.times} series={charts.mem} height={180} />
          <TimeChart title={t("network")} times={charts.times} series={charts.net} height={180} />
        </div>
      ) : <p class="muted">{t("noHistory")}</p>}
    </>
  );
}
