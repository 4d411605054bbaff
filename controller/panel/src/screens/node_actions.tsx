// A node's machine actions: start, stop, reboot and delete. Each asks first (ConfirmButton) and shows the API's
// refusal in its dialog; the answer is the node's new state (its later progress arrives on the event stream).
import { api, call } from "../api/client";
import { defineText, useText } from "../i18n/text";
import { navigate } from "../router";
import { ConfirmButton } from "../ui/confirm";
import type { NodeOut } from "./node_status";

const text = defineText({
  en: { start: "Start", stop: "Stop", reboot: "Reboot", delete: "Delete", startQ: "Start node {name}?",
        stopQ: "Stop node {name}?", rebootQ: "Reboot node {name}?", deleteQ: "Delete node {name}?",
        stopHelp: "Its subscribers lose this node until it is started again.",
        rebootHelp: "The machine restarts; its subscribers lose this node for a moment.",
        deleteHelp: "The machine is terminated and the node removed. This cannot be undone.",
        startHelp: "The node's machine starts and its agent reconnects.", group: "Node actions" },
  zh: { start: "启动", stop: "停止", reboot: "重启", delete: "删除", startQ: "启动节点 {name}？",
        stopQ: "停止节点 {name}？", rebootQ: "重启节点 {name}？", deleteQ: "删除节点 {name}？",
        stopHelp: "在重新启动之前，订阅用户将无法使用此节点。",
        rebootHelp: "机器将重新启动；订阅用户会短暂无法使用此节点。",
        deleteHelp: "机器将被终止，节点将被移除。此操作无法撤销。",
        startHelp: "节点的机器将启动，代理会重新连接。", group: "节点操作" },
  ru: { start: "Запустить", stop: "Остановить", reboot: "Перезагрузить", delete: "Удалить",
        startQ: "Запустить узел {name}?", stopQ: "Остановить узел {name}?", rebootQ: "Перезагрузить узел {name}?",
        deleteQ: "Удалить узел {name}?",
        stopHelp: "Подписчики не смогут пользоваться узлом, пока его не запустят снова.",
        rebootHelp: "Машина перезапустится; подписчики ненадолго потеряют этот узел.",
        deleteHelp: "Машина будет уничтожена, а узел удалён. Это действие нельзя отменить.",
        startHelp: "Машина узла запустится, и агент переподключится.", group: "Действия с узлом" },
});

type Action = "start" | "stop" | "reboot";

export function NodeActions({ node, onChange }: { node: NodeOut; onChange: (node: NodeOut) => void }) {
  const t = useText(text);
  const path = { params: { path: { id: node.id } } };
  const act = async (action: Action) => {
    const route = `/api/v1/nodes/{id}/${action}` as const;
    onChange(await call(api.POST(route, path)));
  };
  const gone = node.status === "deleting" || node.status === "deleted";
  const name = node.name;
  return (
    <div class="buttons node-actions" role="group" aria-label={t("group")}>
      <ConfirmButton label={t("start")} title={t("startQ", { name })} disabled={node.status !== "stopped"}
                     confirmLabel={t("start")} onConfirm={() => act("start")}>
        <p>{t("startHelp")}</p>
      </ConfirmButton>
      <ConfirmButton label={t("stop")} title={t("stopQ", { name })} disabled={node.status !== "running"}
                     confirmLabel={t("stop")} onConfirm={() => act("stop")}>
        <p>{t("stopHelp")}</p>
      </ConfirmButton>
      <ConfirmButton label={t("reboot")} title={t("rebootQ", { name })} disabled={node.status !== "running"}
                     confirmLabel={t("reboot")} onConfirm={() => act("reboot")}>
        <p>{t("rebootHelp")}</p>
      </ConfirmButton>
      <ConfirmButton label={t("delete")} title={t("deleteQ", { name })} danger disabled={gone}
                     confirmLabel={t("delete")} onConfirm={async () => {
                       await call(api.DELETE("/api/v1/nodes/{id}", path));
                       navigate("/fleet");
                     }}>
        <p>{t("deleteHelp")}</p>
      </ConfirmButton>
    </div>
  );
}
