// The fleet's figures, counted from every node the live stream knows: per status, online/offline, behind on
// their desired revision, with failed components, and the same per region. Boxes and rows exist before the
// first event (showing "—"), so figures arriving never move the page.
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { Num, Rate, Value } from "../ui/values";
import { failedComponents, STATUSES, statusText, type NodeOut, type NodeStatus } from "./node_status";

type Region = components["schemas"]["Region"];

export interface Counts {
  total: number;
  online: number;
  offline: number;
  behind: number;
  failed: number;
  byStatus: Record<NodeStatus, number>;
}

export interface FleetSummary extends Counts {
  regions: Map<string, Counts & { name: string }>;
}

function emptyCounts(): Counts {
  const byStatus = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<NodeStatus, number>;
  return { total: 0, online: 0, offline: 0, behind: 0, failed: 0, byStatus };
}

function add(c: Counts, n: NodeOut): void {
  c.total++;
  c.byStatus[n.status]++;
  if (n.agent.online) c.online++; else c.offline++;
  if (!n.agent.in_sync) c.behind++;
  if (failedComponents(n).length) c.failed++;
}

/** Count the nodes; every configured region gets a row, with nodes or without. */
export function summarize(nodes: Iterable<NodeOut>, regions: Region[]): FleetSummary {
  const all = emptyCounts();
  const per = new Map<string, Counts & { name: string }>();
  for (const r of regions) per.set(r.region, { ...emptyCounts(), name: r.name });
  for (const n of nodes) {
    add(all, n);
    let row = per.get(n.region);
    if (!row) { row = { ...emptyCounts(), name: n.region_name }; per.set(n.region, row); }
    add(row, n);
  }
  return { ...all, regions: per };
}

const text = defineText({
  en: { total: "Nodes", online: "Online", offline: "Offline", behind: "Applying a new revision",
        failed: "With failed components", traffic: "Traffic now (in / out)", byStatus: "Nodes by status", byRegion: "Nodes by region", code: "Code" },
  zh: { total: "节点", online: "在线", offline: "离线", behind: "正在应用新版本", failed: "有失败组件", traffic: "当前流量（入 / 出）",
        byStatus: "按状态统计节点", byRegion: "按区域统计节点", code: "代码" },
  ru: { total: "Узлы", online: "В сети", offline: "Не в сети", behind: "Применяют новую ревизию",
        failed: "Со сбоем компонентов", traffic: "Трафик сейчас (вход / выход)", byStatus: "Узлы по статусам", byRegion: "Узлы по регионам", code: "Код" },
});

/** Shown while the stream has not said anything yet: the figures are unknown, not zero. */
const unknown = (known: boolean, n: number) => (known ? n : null);

export function StatCards({ summary, known, traffic }: { summary: FleetSummary; known: boolean;
                                                         traffic: { rx: number; tx: number } | null }) {
  const t = useText(text);
  const st = useText(statusText);
  const boxes: [string, number, string][] = [
    [t("total"), summary.total, "total"], [t("online"), summary.online, "online"],
    [t("offline"), summary.offline, "offline"], [t("behind"), summary.behind, "behind"],
    [t("failed"), summary.failed, "failed"],
  ];
  return (
    <>
      <div class="cards fleet-cards" data-testid="fleet-stats">
        {boxes.map(([label, n, key]) => (
          <div class="stat" key={key} data-stat={key}>
            <span class="muted">{label}</span>
            <span class="value"><Num n={unknown(known, n)} /></span>
          </div>
        ))}
        <div class="stat" data-stat="traffic">
          <span class="muted">{t("traffic")}</span>
          <span class="value traffic-value"><Rate n={traffic?.rx} /> / <Rate n={traffic?.tx} /></span>
        </div>
      </div>
      <section class="card" aria-label={t("byStatus")}>
        <h2 class="fleet-sub">{t("byStatus")}</h2>
        <ul class="status-counts">
          {STATUSES.filter((s) => s !== "deleted").map((s) => (
            <li key={s} data-status-count={s}><span class="muted">{st(s)}</span> <Num n={unknown(known, summary.byStatus[s])} /></li>
          ))}
        </ul>
      </section>
    </>
  );
}

export function RegionTable({ summary, known }: { summary: FleetSummary; known: boolean }) {
  const t = useText(text);
  const c = useText(common);
  const st = useText(statusText);
  const shown: NodeStatus[] = ["running", "pending", "creating", "stopped", "error"];
  return (
    <section aria-label={t("byRegion")}>
      <h2>{t("byRegion")}</h2>
      <div class="table-wrap" tabIndex={0} role="region" aria-label={t("byRegion")}>
        <table class="fleet-regions">
          <thead>
            <tr>
              <th scope="col">{c("region")}</th><th scope="col">{t("total")}</th><th scope="col">{t("online")}</th>
              <th scope="col">{t("offline")}</th>
              {shown.map((s) => <th scope="col" key={s}>{st(s)}</th>)}
              <th scope="col">{t("failed")}</th>
            </tr>
          </thead>
          <tbody>
            {[...summary.regions].map(([code, r]) => (
              <tr key={code} data-region={code}>
                <th scope="row"><Value>{r.name}</Value> <Value mono>{code === r.name ? "" : code}</Value></th>
                <td><Num n={unknown(known, r.total)} /></td><td><Num n={unknown(known, r.online)} /></td>
                <td><Num n={unknown(known, r.offline)} /></td>
                {shown.map((s) => <td key={s}><Num n={unknown(known, r.byStatus[s])} /></td>)}
                <td><Num n={unknown(known, r.failed)} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
