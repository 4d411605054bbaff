// A new node's way to online, live from its events (/api/v1/events?node_id=): queued, machine being made, the
// agent enrolled and connected, its first configuration applied. No reload and no polling.
import { useState } from "preact/hooks";
import { currentUser } from "../api/session";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { href } from "../router";
import { LinkButton } from "../ui/link_button";
import { StreamBadge } from "../ui/stream_state";
import { Value } from "../ui/values";
import { OnlineBadge, StatusBadge, useNodeEvents, type NodeOut } from "./node_status";
import "./node.css";

const text = defineText({
  en: { heading: "Node {name} is on its way", done: "Node {name} is online.", failed: "The node could not be created.",
        queued: "Accepted by the controller", machine: "Machine started", enrolled: "Agent enrolled",
        online: "Agent connected (online)", applied: "Configuration applied", open: "Open the node’s page",
        another: "Create another node", step: "Progress", noStream: "Your account cannot read live events: open the node’s page to see its status.",
        stepDone: "done", stepWaiting: "waiting" },
  zh: { heading: "节点 {name} 正在创建", done: "节点 {name} 已在线。", failed: "无法创建该节点。",
        queued: "控制器已接受", machine: "机器已启动", enrolled: "代理已注册",
        online: "代理已连接（在线）", applied: "配置已应用", open: "打开节点页面",
        another: "再创建一个节点", step: "进度", noStream: "您的账户无法读取实时事件：请打开节点页面查看状态。",
        stepDone: "已完成", stepWaiting: "等待中" },
  ru: { heading: "Узел {name} создаётся", done: "Узел {name} в сети.", failed: "Не удалось создать узел.",
        queued: "Принят контроллером", machine: "Машина запущена", enrolled: "Агент зарегистрирован",
        online: "Агент подключён (в сети)", applied: "Конфигурация применена", open: "Открыть страницу узла",
        another: "Создать ещё один узел", step: "Ход создания", noStream: "Ваша учётная запись не может читать события в реальном времени: статус — на странице узла.",
        stepDone: "готово", stepWaiting: "ожидание" },
});

type Step = "queued" | "machine" | "enrolled" | "online" | "applied";

function stepsDone(n: NodeOut): Record<Step, boolean> {
  const running = n.status === "running";
  return {
    queued: true,
    machine: running || n.instance_id !== null || n.agent.enrolled,
    enrolled: n.agent.enrolled,
    online: n.agent.online,
    applied: n.agent.online && n.agent.in_sync && n.agent.applied_revision > 0,
  };
}

export function NodeProgress({ node: first, onAnother }: { node: NodeOut; onAnother: () => void }) {
  const t = useText(text);
  const [node, setNode] = useState(first);
  const streamed = may(currentUser(), "logs.view");
  const state = useNodeEvents(streamed, first.id, (e) => {
    if (e.type === "initial") { const n = e.nodes.find((x) => x.id === first.id); if (n) setNode(n); }
    else if (e.type !== "shutdown" && e.type !== "metrics" && e.node.id === first.id) setNode(e.node);
  });
  const done = stepsDone(node);
  const finished = node.status === "running" && node.agent.online;
  const name = <Value>{node.name}</Value>;
  const steps: Step[] = ["queued", "machine", "enrolled", "online", "applied"];
  const [before, after] = t(finished ? "done" : "heading", { name: "\u0000" }).split("\u0000");
  return (
    <section class="card node-progress" data-testid="node-progress" data-node-id={node.id}>
      <div class="progress-head">
        <h2 aria-live="polite" data-testid="progress-title">{before}{name}{after}</h2>
        {streamed && <StreamBadge state={state} />}
      </div>
      {!streamed && <p class="notice">{t("noStream")}</p>}
      <p class="progress-status"><StatusBadge status={node.status} /> <OnlineBadge online={node.agent.online} /></p>
      {node.status === "error" && (
        <div class="notice error" role="alert"><strong>{t("failed")}</strong>
          {node.status_reason && <p translate={false}>{node.status_reason}</p>}</div>
      )}
      <ol class="steps" aria-label={t("step")}>
        {steps.map((s) => (
          <li key={s} class={done[s] ? "done" : undefined} data-step={s} data-done={String(done[s])}>
            <span class="step-mark" aria-hidden="true">{done[s] ? "✓" : "○"}</span>
            {t(s)} <span class="sr-only">({t(done[s] ? "stepDone" : "stepWaiting")})</span>
          </li>
        ))}
      </ol>
      <div class="buttons">
        <button type="button" onClick={onAnother}>{t("another")}</button>
        <LinkButton primary href={href(`/nodes/${node.id}`)} testId="open-node">{t("open")}</LinkButton>
      </div>
    </section>
  );
}
