// What every node screen shares: the node's type, its status and connectivity in words of every language, and
// the events of /api/v1/events read into typed values.
import type { components } from "../api/schema";
import { useStream, type StreamState } from "../api/live";
import { defineText, useText } from "../i18n/text";
import { Badge } from "../ui/screen";

export type NodeOut = components["schemas"]["NodeOut"];
export type NodeStatus = NodeOut["status"];

/** every status, in the order a node's life goes through them */
export const STATUSES: readonly NodeStatus[] = ["pending", "creating", "starting", "running", "stopping", "stopped",
                                                "deleting", "deleted", "error"];

export const statusText = defineText({
  en: { pending: "Pending", creating: "Creating", starting: "Starting", running: "Running", stopping: "Stopping",
        stopped: "Stopped", deleting: "Deleting", deleted: "Deleted", error: "Error", online: "Online",
        offline: "Offline", inSync: "In sync", behind: "Applying", failed: "Failed", ok: "Applied",
        absent: "Not used", unknown: "Unknown" },
  zh: { pending: "等待中", creating: "创建中", starting: "启动中", running: "运行中", stopping: "停止中",
        stopped: "已停止", deleting: "删除中", deleted: "已删除", error: "错误", online: "在线",
        offline: "离线", inSync: "已同步", behind: "应用中", failed: "失败", ok: "已应用",
        absent: "未使用", unknown: "未知" },
  ru: { pending: "Ожидает", creating: "Создаётся", starting: "Запускается", running: "Работает",
        stopping: "Останавливается", stopped: "Остановлен", deleting: "Удаляется", deleted: "Удалён",
        error: "Ошибка", online: "В сети", offline: "Не в сети", inSync: "Синхронизирован", behind: "Применяется",
        failed: "Сбой", ok: "Применён", absent: "Не используется", unknown: "Неизвестно" },
});

const TONE: Record<NodeStatus, "ok" | "warn" | "bad" | "idle"> = {
  pending: "warn", creating: "warn", starting: "warn", running: "ok", stopping: "warn", stopped: "idle",
  deleting: "warn", deleted: "idle", error: "bad",
};

export function StatusBadge({ status }: { status: NodeStatus }) {
  const t = useText(statusText);
  return <span data-testid="node-status" data-status={status}><Badge tone={TONE[status]}>{t(status)}</Badge></span>;
}

export function OnlineBadge({ online }: { online: boolean }) {
  const t = useText(statusText);
  return (
    <span data-testid="node-online" data-online={String(online)}>
      <Badge tone={online ? "ok" : "idle"}>{t(online ? "online" : "offline")}</Badge>
    </span>
  );
}

/** Components whose last apply failed (the agent keeps their previous config and retries). */
export function failedComponents(node: NodeOut): string[] {
  return node.agent.components.filter((c) => c.state === "failed").map((c) => c.name);
}

/** A component's state (the agent's ok / failed / absent) in words. */
export function ComponentState({ state }: { state: string }) {
  const t = useText(statusText);
  const known = state === "ok" || state === "failed" || state === "absent" ? state : "unknown";
  return <Badge tone={known === "ok" ? "ok" : known === "failed" ? "bad" : "idle"}>{t(known)}</Badge>;
}

/** A node's newest sample, as `metrics` events of /api/v1/events?metrics=true carry it (services/telemetry.py
 * traffic_now; an SSE payload, so not in the OpenAPI schema). The rates are null until the node sent two. */
export interface NodeNow {
  time: string;
  cpu_percent: number;
  memory_percent: number;
  rx_bytes_per_second: number | null;
  tx_bytes_per_second: number | null;
}

export type NodeEvent =
  | { type: "initial"; nodes: NodeOut[] }
  | { type: "create" | "update" | "delete"; node: NodeOut }
  | { type: "metrics"; nodeId: string; now: NodeNow }
  | { type: "shutdown" };

/** One `event: node` message of /api/v1/events as a typed event; anything else (log events, unknown types): null. */
export function nodeEvent(event: string, data: unknown): NodeEvent | null {
  if (event !== "node" || !data || typeof data !== "object") return null;
  const d = data as { type?: string; nodes?: NodeOut[]; node?: NodeOut; node_id?: string; metrics?: NodeNow };
  if (d.type === "initial" && Array.isArray(d.nodes)) return { type: "initial", nodes: d.nodes };
  if ((d.type === "create" || d.type === "update" || d.type === "delete") && d.node) return { type: d.type, node: d.node };
  if (d.type === "metrics" && typeof d.node_id === "string" && d.metrics) {
    return { type: "metrics", nodeId: d.node_id, now: d.metrics };
  }
  if (d.type === "shutdown") return { type: "shutdown" };
  return null;
}

/** The fleet's node events (one node's with nodeId), live; null path (no logs.view permission): no stream. */
export function useNodeEvents(enabled: boolean, nodeId: string | null, onEvent: (e: NodeEvent) => void,
                              metrics = false): StreamState {
  const query = new URLSearchParams(nodeId ? { node_id: nodeId } : {});
  if (metrics) query.set("metrics", "true");
  const path = !enabled ? null : `/api/v1/events${query.size ? `?${query}` : ""}`;
  return useStream(path, (event, data) => {
    const e = nodeEvent(event, data);
    if (e) onEvent(e);
  });
}
