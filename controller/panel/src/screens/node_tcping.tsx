// TCP ping from the node (GET /nodes/{id}/tcping?target=host:port): whether the node reaches a target and how
// fast. The API's 422 shows on the target field; 503/504 (agent not connected, no answer) above the form.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { defineText, useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { TextField } from "../ui/form";
import { Badge } from "../ui/screen";
import { Num, Value } from "../ui/values";

type Result = components["schemas"]["TcpingResult"];

const text = defineText({
  en: { title: "TCP ping from the node", target: "Target (host:port)", run: "Ping", running: "Pinging…",
        connected: "Connected", refused: "Not connected", latency: "Latency (ms)", result: "Result" },
  zh: { title: "从节点测试 TCP 连通性", target: "目标（主机:端口）", run: "测试", running: "测试中…",
        connected: "已连接", refused: "未连接", latency: "延迟（毫秒）", result: "结果" },
  ru: { title: "TCP-пинг с узла", target: "Цель (хост:порт)", run: "Проверить", running: "Проверка…",
        connected: "Соединение есть", refused: "Нет соединения", latency: "Задержка (мс)", result: "Результат" },
});

export function NodeTcping({ id, disabled }: { id: string; disabled?: boolean }) {
  const t = useText(text);
  const [target, setTarget] = useState("");
  const { busy, error, run: start } = useAction();
  const [result, setResult] = useState<Result | null>(null);
  const run = (e: Event) => {
    e.preventDefault();
    setResult(null);
    void start(async () => {
      setResult(await call(api.GET("/api/v1/nodes/{id}/tcping", { params: { path: { id }, query: { target: target.trim() } } })));
    });
  };
  return (
    <section class="card node-tcping" aria-labelledby="node-tcping-title">
      <h2 id="node-tcping-title">{t("title")}</h2>
      <form class="toolbar" onSubmit={run} noValidate>
        <TextField label={t("target")} name="target" error={error} value={target} onValue={setTarget}
                   placeholder="example.com:443" translate={false} autoComplete="off"
                   data-testid="tcping-target" />
        <button type="submit" disabled={busy || disabled || !target.trim()}>{busy ? t("running") : t("run")}</button>
      </form>
      <ErrorNotice error={error} />
      <div class="tcping-result" aria-live="polite" data-testid="tcping-result">
        {result && (
          <dl class="facts">
            <dt>{t("result")}</dt>
            <dd><Badge tone={result.connected ? "ok" : "bad"}>{t(result.connected ? "connected" : "refused")}</Badge>{" "}
              <Value mono>{result.target}</Value></dd>
            <dt>{t("latency")}</dt><dd><Num n={result.latency} /></dd>
            {result.error && <><dt class="sr-only">{t("refused")}</dt><dd><Value>{result.error}</Value></dd></>}
          </dl>
        )}
      </div>
    </section>
  );
}
