// One node (#/nodes/<id>): its record kept live by /api/v1/events?node_id=<id>, components, system info,
// metrics over a chosen range, the live log tail, tcping and the machine actions.
import { useState } from "preact/hooks";
import { api, call, ApiError } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { href } from "../router";
import { ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Screen } from "../ui/screen";
import { StreamBadge } from "../ui/stream_state";
import { NodeActions } from "./node_actions";
import { ComponentTable, NodeFacts, NodeInfoCard } from "./node_facts";
import { NodeLogs } from "./node_logs";
import { NodeMetrics } from "./node_metrics";
import { useNodeEvents, type NodeOut } from "./node_status";
import { NodeTcping } from "./node_tcping";
import "./node.css";

const text = defineText({
  en: { title: "Node", missing: "There is no node with this id.", deleted: "This node has been deleted.",
        toFleet: "Back to the fleet" },
  zh: { title: "节点", missing: "没有此 ID 的节点。", deleted: "此节点已被删除。", toFleet: "返回集群" },
  ru: { title: "Узел", missing: "Узла с таким ID нет.", deleted: "Этот узел удалён.",
        toFleet: "Назад к парку" },
});

export function NodeDetail({ id }: { id: string }) {
  const t = useText(text);
  const c = useText(common);
  const user = currentUser();
  const loaded = useLoad(() => call(api.GET("/api/v1/nodes/{id}", { params: { path: { id } } })), [id]);
  const [gone, setGone] = useState(false);
  const streamed = may(user, "logs.view");
  const state = useNodeEvents(streamed && !!loaded.data, id, (e) => {
    if (e.type === "shutdown" || e.type === "metrics") return;
    const n = e.type === "initial" ? e.nodes.find((x) => x.id === id) : e.node.id === id ? e.node : undefined;
    if (e.type === "delete") setGone(true);
    if (n) loaded.setData(() => n);
  });
  const node = loaded.data;
  const back = <a href={href("/fleet")}>{t("toFleet")}</a>;
  if (loaded.error) {
    const missing = loaded.error instanceof ApiError && loaded.error.status === 404;
    return <Screen title={c("nodes")} actions={back}>
      {missing ? <p class="notice">{t("missing")}</p> : <ErrorNotice error={loaded.error} />}
    </Screen>;
  }
  if (!node) return <Screen title={c("nodes")} actions={back}><Loading /></Screen>;
  return <NodeScreen node={node} gone={gone || node.status === "deleted"} stream={streamed ? state : null}
                     onChange={(n) => loaded.setData(() => n)} />;
}

function NodeScreen({ node, gone, stream, onChange }: { node: NodeOut; gone: boolean;
                                                        stream: ReturnType<typeof useNodeEvents> | null;
                                                        onChange: (n: NodeOut) => void }) {
  const t = useText(text);
  const user = currentUser();
  const edit = may(user, "nodes.edit");
  return (
    <Screen title={t("title")} name={node.name} actions={<>
      {stream && <StreamBadge state={stream} />}
      <a href={href("/fleet")}>{t("toFleet")}</a>
    </>}>
      {gone && <p class="notice" role="status">{t("deleted")}</p>}
      {edit && !gone && <NodeActions node={node} onChange={onChange} />}
      <div class="grid2">
        <NodeFacts node={node} />
        <div>
          <ComponentTable node={node} />
          <NodeInfoCard id={node.id} online={node.agent.online && !gone} />
        </div>
      </div>
      <NodeMetrics id={node.id} />
      {may(user, "logs.view") && <NodeLogs id={node.id} />}
      {edit && !gone && <NodeTcping id={node.id} disabled={!node.agent.online} />}
    </Screen>
  );
}
