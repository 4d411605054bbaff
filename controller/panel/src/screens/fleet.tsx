// The fleet overview (#/fleet): figures per status and region counted from the live event stream, and one
// server-paged table of nodes (a fleet of thousands renders one page of rows). The stream's updates change the
// rows on screen; a node created or deleted reloads the page the table shows.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { href, navigate, useRoute } from "../router";
import { Empty, ErrorNotice } from "../ui/feedback";
import { LinkButton } from "../ui/link_button";
import { useLoad } from "../ui/load";
import { Pager } from "../ui/pager";
import { Screen } from "../ui/screen";
import { StreamBadge } from "../ui/stream_state";
import { Ago, Rate, Value } from "../ui/values";
import { RegionTable, StatCards, summarize } from "./fleet_stats";
import { failedComponents, OnlineBadge, STATUSES, StatusBadge, statusText, useNodeEvents,
         type NodeNow, type NodeOut, type NodeStatus } from "./node_status";
import "./fleet.css";

type Region = components["schemas"]["Region"];

const PAGE_SIZE = 50;
/** a burst of creations or deletions reloads the table once */
const RELOAD_DELAY_MS = 300;

const text = defineText({
  en: { createNode: "Create node", nodes: "Nodes", connectivity: "Connectivity", revision: "Revision",
        revisionOf: "applied {applied} of {desired}", failed: "Failed components", address: "Public IP",
        lastSeen: "Last seen", traffic: "Traffic now", trafficOf: "in {rx}, out {tx}", noNodes: "No nodes match.", anyStatus: "Any status", anyRegion: "Any region",
        searchHint: "Name, id, IP or instance id", apply: "Apply", noStream: "Your account cannot read live events: figures are not shown." },
  zh: { createNode: "创建节点", nodes: "节点列表", connectivity: "连接", revision: "版本",
        revisionOf: "已应用 {applied} / 期望 {desired}", failed: "失败组件", address: "公网 IP",
        lastSeen: "最后在线", traffic: "当前流量", trafficOf: "入 {rx}，出 {tx}", noNodes: "没有符合条件的节点。", anyStatus: "任意状态", anyRegion: "任意区域",
        searchHint: "名称、ID、IP 或实例 ID", apply: "应用", noStream: "您的账户无法读取实时事件，因此不显示统计。" },
  ru: { createNode: "Создать узел", nodes: "Список узлов", connectivity: "Связь", revision: "Ревизия",
        revisionOf: "применена {applied} из {desired}", failed: "Компоненты со сбоем", address: "Публичный IP",
        lastSeen: "Последний раз в сети", traffic: "Трафик сейчас", trafficOf: "вход {rx}, выход {tx}", noNodes: "Нет подходящих узлов.", anyStatus: "Любой статус",
        anyRegion: "Любой регион", searchHint: "Имя, ID, IP или ID экземпляра", apply: "Применить",
        noStream: "Ваша учётная запись не может читать события в реальном времени: сводка не показана." },
});

interface Filters { status: string; region: string; search: string; page: number }

function filtersOf(query: URLSearchParams): Filters {
  return { status: query.get("status") ?? "", region: query.get("region") ?? "", search: query.get("search") ?? "",
           page: Math.max(1, Number(query.get("page")) || 1) };
}

export function Fleet() {
  const t = useText(text);
  const c = useText(common);
  const user = currentUser();
  const route = useRoute();
  const filters = filtersOf(route.query);
  const regions = useLoad(() => call(api.GET("/api/v1/regions")), []);
  const list = useLoad(() => call(api.GET("/api/v1/nodes", { params: { query: {
    page: filters.page, size: PAGE_SIZE, status: (filters.status || undefined) as NodeStatus | undefined,
    region: filters.region || undefined, search: filters.search || undefined } } })),
    [filters.page, filters.status, filters.region, filters.search]);

  // every node the stream knows, by id (the stream's `initial` lists them all, then each change)
  const fleet = useRef(new Map<string, NodeOut>());
  const [version, setVersion] = useState(0);
  const [known, setKnown] = useState(false);
  // each node's newest sample (metrics events: every node reports every few seconds, so a fleet of thousands
  // sends many a second; the screen redraws at most once a frame)
  const traffic = useRef(new Map<string, NodeNow>());
  const [trafficVersion, setTrafficVersion] = useState(0);
  const frame = useRef<number | undefined>(undefined);
  useEffect(() => () => cancelAnimationFrame(frame.current ?? 0), []);
  const reloadTimer = useRef<number | undefined>(undefined);
  useEffect(() => () => clearTimeout(reloadTimer.current), []);
  const reloadSoon = () => {
    clearTimeout(reloadTimer.current);
    reloadTimer.current = window.setTimeout(() => void list.reload(), RELOAD_DELAY_MS);
  };
  const streamed = may(user, "logs.view");
  const state = useNodeEvents(streamed, null, (e) => {
    if (e.type === "shutdown") return;
    if (e.type === "metrics") {
      traffic.current.set(e.nodeId, e.now);
      frame.current ??= requestAnimationFrame(() => { frame.current = undefined; setTrafficVersion((v) => v + 1); });
      return;
    }
    if (e.type === "initial") {
      fleet.current = new Map(e.nodes.map((n) => [n.id, n]));
      setKnown(true);
      reloadSoon(); // after a reconnect the page may have missed changes
    } else if (e.type === "delete") {
      fleet.current.delete(e.node.id);
      traffic.current.delete(e.node.id);
      reloadSoon();
    } else {
      const isNew = !fleet.current.has(e.node.id);
      fleet.current.set(e.node.id, e.node);
      if (e.type === "create" || isNew) reloadSoon();
      else list.setData((page) => page && { ...page, items: page.items.map((n) => (n.id === e.node.id ? e.node : n)) });
    }
    setVersion((v) => v + 1);
  }, true);
  const fleetTraffic = useMemo(() => totalTraffic(traffic.current, fleet.current), [trafficVersion, version]);
  const summary = useMemo(() => summarize(fleet.current.values(), regions.data ?? []), [version, regions.data]);

  const go = (change: Partial<Filters>) => {
    const next = { ...filters, page: 1, ...change };
    navigate("/fleet", { status: next.status, region: next.region, search: next.search,
                         page: next.page > 1 ? next.page : undefined });
  };

  return (
    <Screen title={c("fleet")} actions={<>
      {streamed && <StreamBadge state={state} />}
      {may(user, "nodes.edit") && <LinkButton primary href={href("/nodes/new")} testId="create-node">{t("createNode")}</LinkButton>}
    </>}>
      {streamed ? <StatCards summary={summary} known={known} traffic={fleetTraffic} />
                : <p class="notice">{t("noStream")}</p>}
      <ErrorNotice error={regions.error} />
      {streamed && <RegionTable summary={summary} known={known} />}
      <h2>{t("nodes")}</h2>
      <FleetFilters filters={filters} regions={regions.data ?? []} onChange={go} />
      <ErrorNotice error={list.error} />
      <NodeTable nodes={list.data?.items} traffic={traffic.current} version={trafficVersion} />
      {list.data && list.data.total === 0 && <Empty>{t("noNodes")}</Empty>}
      {list.data && list.data.total > PAGE_SIZE && (
        <Pager page={filters.page} size={PAGE_SIZE} total={list.data.total} onPage={(page) => go({ page })} />
      )}
    </Screen>
  );
}

function FleetFilters({ filters, regions, onChange }: { filters: Filters; regions: Region[];
                                                       onChange: (f: Partial<Filters>) => void }) {
  const t = useText(text);
  const c = useText(common);
  const st = useText(statusText);
  const [search, setSearch] = useState(filters.search);
  useEffect(() => setSearch(filters.search), [filters.search]);
  return (
    <form class="toolbar" role="search" onSubmit={(e) => { e.preventDefault(); onChange({ search: search.trim() }); }}>
      <div class="field">
        <label for="fleet-status">{c("status")}</label>
        <select id="fleet-status" value={filters.status}
                onChange={(e) => onChange({ status: (e.currentTarget as HTMLSelectElement).value })}>
          <option value="">{t("anyStatus")}</option>
          {STATUSES.map((s) => <option key={s} value={s}>{st(s)}</option>)}
        </select>
      </div>
      <div class="field">
        <label for="fleet-region">{c("region")}</label>
        <select id="fleet-region" value={filters.region}
                onChange={(e) => onChange({ region: (e.currentTarget as HTMLSelectElement).value })}>
          <option value="">{t("anyRegion")}</option>
          {regions.map((r) => <option key={r.region} value={r.region} translate={false}>{r.name}</option>)}
        </select>
      </div>
      <div class="field">
        <label for="fleet-search">{c("search")}</label>
        <input id="fleet-search" type="search" value={search} placeholder={t("searchHint")} maxLength={200}
               onInput={(e) => setSearch((e.currentTarget as HTMLInputElement).value)} />
      </div>
      <button type="submit">{t("apply")}</button>
    </form>
  );
}

/** The fleet's traffic now: the sum of the online nodes' newest rates (null until one has a rate); a node gone
 * offline keeps its last sample, which is not traffic now. */
function totalTraffic(nows: Map<string, NodeNow>, nodes: Map<string, NodeOut>): { rx: number; tx: number } | null {
  let total: { rx: number; tx: number } | null = null;
  for (const [id, n] of nows) {
    if (!nodes.get(id)?.agent.online || n.rx_bytes_per_second === null || n.tx_bytes_per_second === null) continue;
    total ??= { rx: 0, tx: 0 };
    total.rx += n.rx_bytes_per_second;
    total.tx += n.tx_bytes_per_second;
  }
  return total;
}

function NodeTable({ nodes, traffic }: { nodes: NodeOut[] | undefined; traffic: Map<string, NodeNow>;
                                         version: number }) {
  const t = useText(text);
  const c = useText(common);
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label={t("nodes")}>
      <table class="fleet-nodes" data-testid="node-table" aria-busy={nodes === undefined}>
        <thead>
          <tr>
            <th scope="col">{c("name")}</th><th scope="col">{c("region")}</th><th scope="col">{c("status")}</th>
            <th scope="col">{t("connectivity")}</th><th scope="col">{t("revision")}</th>
            <th scope="col">{t("failed")}</th><th scope="col">{t("address")}</th><th scope="col">{t("traffic")}</th>
            <th scope="col">{t("lastSeen")}</th>
          </tr>
        </thead>
        <tbody>
          {(nodes ?? []).map((n) => <NodeRow key={n.id} node={n} now={n.agent.online ? traffic.get(n.id) : undefined} />)}
        </tbody>
      </table>
    </div>
  );
}

function NodeRow({ node: n, now }: { node: NodeOut; now: NodeNow | undefined }) {
  const t = useText(text);
  const st = useText(statusText);
  const failed = failedComponents(n);
  return (
    <tr data-node-id={n.id}>
      <th scope="row"><a href={href(`/nodes/${n.id}`)} translate={false}>{n.name}</a></th>
      <td><Value>{n.region_name}</Value></td>
      <td><StatusBadge status={n.status} /></td>
      <td><OnlineBadge online={n.agent.online} /></td>
      <td>
        <span translate={false} class="num" title={t("revisionOf", { applied: n.agent.applied_revision,
                                                                       desired: n.agent.desired_revision })}>
          {n.agent.applied_revision} / {n.agent.desired_revision}
        </span>{" "}
        <span class="muted">{st(n.agent.in_sync ? "inSync" : "behind")}</span>
      </td>
      <td>{failed.length ? <Value>{failed.join(", ")}</Value> : <span class="muted">—</span>}</td>
      <td><Value mono>{n.public_ip ?? "—"}</Value></td>
      <td class="traffic">
        {now && now.rx_bytes_per_second !== null
          ? <span class="nowrap">↓<Rate n={now.rx_bytes_per_second} /> ↑<Rate n={now.tx_bytes_per_second} /></span>
          : <span class="muted">—</span>}
      </td>
      <td><Ago iso={n.agent.last_seen_at} /></td>
    </tr>
  );
}
