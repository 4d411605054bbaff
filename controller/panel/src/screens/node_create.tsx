// Create a node (#/nodes/new): the region from GET /api/v1/regions and the other fields POST /api/v1/nodes takes;
// the API's 422 shows on its field. Then the node's progress, live from its events, until it is online.
import { useEffect, useState } from "preact/hooks";
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { may } from "../permissions";
import { href } from "../router";
import { useAction } from "../ui/action";
import { ErrorNotice, Loading } from "../ui/feedback";
import { Field, SelectField, TextField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Screen } from "../ui/screen";
import { NodeProgress } from "./node_progress";
import type { NodeOut } from "./node_status";

const text = defineText({
  en: { title: "Create node", nameHint: "Optional: letters, digits, . _ - (a name is made when empty)",
        core: "Proxy core", coreDefault: "Fleet default", reality: "REALITY (optional, Xray only)",
        dest: "Target site (host:port)", destHint: "Empty: the region's or the fleet's",
        serverNames: "Server names", serverNamesHint: "Comma-separated; the first is the one subscriptions carry",
        shortIds: "Short ids", shortIdsHint: "Comma-separated hex, an even number of characters up to 16",
        submit: "Create node", noRegions: "No region is configured.", creating: "Creating…" },
  zh: { title: "创建节点", nameHint: "可选：字母、数字、. _ -（留空则自动命名）",
        core: "代理内核", coreDefault: "集群默认", reality: "REALITY（可选，仅 Xray）",
        dest: "目标网站（主机:端口）", destHint: "留空：使用区域或集群的设置",
        serverNames: "服务器名称", serverNamesHint: "用逗号分隔；第一个写入订阅",
        shortIds: "短 ID", shortIdsHint: "用逗号分隔的十六进制，偶数个字符，最多 16 个",
        submit: "创建节点", noRegions: "尚未配置任何区域。", creating: "正在创建…" },
  ru: { title: "Создать узел", nameHint: "Необязательно: буквы, цифры, . _ - (пусто — имя будет создано)",
        core: "Прокси-ядро", coreDefault: "По умолчанию для парка", reality: "REALITY (необязательно, только Xray)",
        dest: "Целевой сайт (хост:порт)", destHint: "Пусто — настройка региона или парка",
        serverNames: "Имена серверов", serverNamesHint: "Через запятую; первое попадает в подписки",
        shortIds: "Короткие ID", shortIdsHint: "Через запятую, шестнадцатеричные, чётное число символов до 16",
        submit: "Создать узел", noRegions: "Не настроено ни одного региона.", creating: "Создание…" },
});

const list = (raw: string) => raw.split(",").map((s) => s.trim()).filter(Boolean);

export function NodeCreate() {
  const t = useText(text);
  const c = useText(common);
  const [created, setCreated] = useState<NodeOut | null>(null);
  return (
    <Screen title={t("title")} actions={<a href={href("/fleet")}>{c("back")}</a>}>
      {!may(currentUser(), "nodes.edit") ? <p class="notice">{c("forbidden")}</p>
        : created ? <NodeProgress node={created} onAnother={() => setCreated(null)} />
        : <CreateForm onCreated={setCreated} />}
    </Screen>
  );
}

function CreateForm({ onCreated }: { onCreated: (node: NodeOut) => void }) {
  const t = useText(text);
  const c = useText(common);
  const regions = useLoad(() => call(api.GET("/api/v1/regions")), []);
  const [region, setRegion] = useState("");
  const [name, setName] = useState("");
  const [core, setCore] = useState("");
  const [dest, setDest] = useState("");
  const [serverNames, setServerNames] = useState("");
  const [shortIds, setShortIds] = useState("");
  const { busy, error, run } = useAction();
  useEffect(() => { if (!region && regions.data?.[0]) setRegion(regions.data[0].region); }, [regions.data]);
  if (regions.error) return <ErrorNotice error={regions.error} />;
  if (!regions.data) return <Loading />;
  if (!regions.data.length) return <p class="notice">{t("noRegions")}</p>;
  const reality = core !== "v2ray" && (dest || serverNames || shortIds)
    ? { ...(dest ? { dest } : {}), ...(serverNames ? { server_names: list(serverNames) } : {}),
        ...(shortIds ? { short_ids: list(shortIds) } : {}) }
    : undefined;
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      onCreated(await call(api.POST("/api/v1/nodes", { body: {
        region, name: name.trim() || undefined, core: (core || undefined) as "xray" | "v2ray" | undefined, reality } })));
    });
  };
  return (
    <form class="card node-create" onSubmit={submit} noValidate>
      <ErrorNotice error={error} />
      <Field label={c("region")} name="region" error={error}>
        {(p) => (
          <select {...p} value={region} onChange={(e) => setRegion((e.currentTarget as HTMLSelectElement).value)}
                  data-testid="region">
            {regions.data!.map((r) => (
              // region names are data (an operator's own, e.g. 香港): never translated
              <option key={r.region} value={r.region} translate={false}>
                {r.name === r.region ? r.name : `${r.name} (${r.region})`}
              </option>
            ))}
          </select>
        )}
      </Field>
      <TextField label={c("name")} name="name" error={error} hint={t("nameHint")} value={name}
                 onValue={setName} autoComplete="off" maxLength={128} />
      <SelectField label={t("core")} name="core" error={error} value={core} onValue={setCore}
                   options={[{ value: "", label: t("coreDefault") }, { value: "xray", label: "Xray" },
                             { value: "v2ray", label: "V2Ray" }]} />
      {core !== "v2ray" && (
        <fieldset class="node-reality">
          <legend>{t("reality")}</legend>
          <TextField label={t("dest")} name="reality.dest" error={error} hint={t("destHint")} value={dest}
                     onValue={setDest} autoComplete="off" />
          <TextField label={t("serverNames")} name="reality.server_names" error={error} hint={t("serverNamesHint")}
                     value={serverNames} onValue={setServerNames} autoComplete="off" />
          <TextField label={t("shortIds")} name="reality.short_ids" error={error} hint={t("shortIdsHint")}
                     value={shortIds} onValue={setShortIds} autoComplete="off" />
        </fieldset>
      )}
      <div class="buttons">
        <button type="submit" class="primary" disabled={busy || !region}>{busy ? t("creating") : t("submit")}</button>
      </div>
    </form>
  );
}
