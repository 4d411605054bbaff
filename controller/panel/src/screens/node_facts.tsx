// What a node is: its record (GET /nodes/{id}, kept live by its events), its components' states as the agent
// last reported them, and the system info measured on the node now (GET /nodes/{id}/info).
import { api, call } from "../api/client";
import { common } from "../i18n/common";
import { tagOf, useLocale } from "../i18n/locale";
import { defineText, useText } from "../i18n/text";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Ago, Bytes, Num, Value, When } from "../ui/values";
import { ComponentState, OnlineBadge, StatusBadge, statusText, type NodeOut } from "./node_status";

const text = defineText({
  en: { facts: "Node", id: "ID", provider: "Provider", instance: "Instance", publicIp: "Public IP",
        privateIp: "Private IP", reason: "Reason", connectivity: "Connectivity", lastSeen: "Last seen",
        agent: "Agent version", hostname: "Host name", revision: "Revision", revisionOf: "applied {applied} of {desired}",
        core: "Proxy core", components: "Components", component: "Component", state: "State", error: "Error",
        hash: "Config hash", noComponents: "The agent has not reported any component yet.", info: "System",
        os: "OS", arch: "Architecture", cpus: "CPUs", memory: "Memory used", swap: "Swap used",
        netTotal: "Network since boot", diskIo: "Disk read / written", sysUptime: "System up", version: "Agent",
        infoOffline: "The node's agent is not connected: its system info shows when it is online.",
        reload: "Read again", inbounds: "Inbounds", enrolled: "Enrolled", statusSince: "Status since" },
  zh: { facts: "节点", id: "ID", provider: "提供方", instance: "实例", publicIp: "公网 IP",
        privateIp: "内网 IP", reason: "原因", connectivity: "连接", lastSeen: "最后在线",
        agent: "代理版本", hostname: "主机名", revision: "版本", revisionOf: "已应用 {applied} / 期望 {desired}",
        core: "代理内核", components: "组件", component: "组件", state: "状态", error: "错误",
        hash: "配置哈希", noComponents: "代理尚未报告任何组件。", info: "系统",
        os: "操作系统", arch: "架构", cpus: "CPU 数", memory: "已用内存", swap: "已用交换",
        netTotal: "开机以来网络流量", diskIo: "磁盘读 / 写", sysUptime: "系统运行", version: "代理",
        infoOffline: "节点的代理未连接：上线后显示其系统信息。",
        reload: "重新读取", inbounds: "入站", enrolled: "注册时间", statusSince: "状态开始于" },
  ru: { facts: "Узел", id: "ID", provider: "Провайдер", instance: "Экземпляр", publicIp: "Публичный IP",
        privateIp: "Внутренний IP", reason: "Причина", connectivity: "Связь", lastSeen: "Последний раз в сети",
        agent: "Версия агента", hostname: "Имя хоста", revision: "Ревизия",
        revisionOf: "применена {applied} из {desired}", core: "Прокси-ядро", components: "Компоненты",
        component: "Компонент", state: "Состояние", error: "Ошибка", hash: "Хеш конфигурации",
        noComponents: "Агент ещё не сообщил ни об одном компоненте.", info: "Система", os: "ОС",
        arch: "Архитектура", cpus: "Процессоры", memory: "Занято памяти", swap: "Занято подкачки",
        netTotal: "Сеть с момента загрузки", diskIo: "Диск: чтение / запись", sysUptime: "Система работает",
        version: "Агент", infoOffline: "Агент узла не подключён: сведения о системе появятся, когда он будет в сети.",
        reload: "Прочитать снова", inbounds: "Входящие", enrolled: "Зарегистрирован", statusSince: "Статус с" },
});

export function NodeFacts({ node: n }: { node: NodeOut }) {
  const t = useText(text);
  const c = useText(common);
  const st = useText(statusText);
  return (
    <section class="card" aria-labelledby="node-facts-title">
      <h2 id="node-facts-title">{t("facts")}</h2>
      <dl class="facts" data-testid="node-facts">
        <dt>{c("status")}</dt>
        <dd><StatusBadge status={n.status} /> <span class="muted">{t("statusSince")}</span> <When iso={n.status_changed_at} /></dd>
        {n.status_reason && <><dt>{t("reason")}</dt><dd><Value>{n.status_reason}</Value></dd></>}
        <dt>{t("connectivity")}</dt><dd><OnlineBadge online={n.agent.online} /></dd>
        <dt>{t("lastSeen")}</dt><dd><Ago iso={n.agent.last_seen_at} /></dd>
        <dt>{t("revision")}</dt>
        <dd data-testid="node-revision">
          <span translate={false} class="num">{n.agent.applied_revision} / {n.agent.desired_revision}</span>{" "}
          <span class="muted">{st(n.agent.in_sync ? "inSync" : "behind")}</span>
        </dd>
        <dt>{t("id")}</dt><dd><Value mono>{n.id}</Value></dd>
        <dt>{c("region")}</dt><dd><Value>{n.region_name}</Value> <Value mono>{n.region}</Value></dd>
        <dt>{t("provider")}</dt><dd><Value>{n.provider}</Value></dd>
        <dt>{t("instance")}</dt><dd><Value mono>{n.instance_id ?? "—"}</Value></dd>
        <dt>{t("publicIp")}</dt><dd><Value mono>{n.public_ip ?? "—"}</Value></dd>
        <dt>{t("privateIp")}</dt><dd><Value mono>{n.private_ip ?? "—"}</Value></dd>
        <dt>{t("core")}</dt><dd><Value>{n.core}</Value></dd>
        {n.v2ray_inbounds && n.v2ray_inbounds.length > 0 && <>
          <dt>{t("inbounds")}</dt>
          <dd><Value mono>{n.v2ray_inbounds.map((i) => `${i.profile} ${i.listen}:${i.port}`).join(", ")}</Value></dd>
        </>}
        <dt>{t("agent")}</dt><dd><Value>{n.agent.version ?? "—"}</Value></dd>
        <dt>{t("hostname")}</dt><dd><Value>{n.agent.hostname ?? "—"}</Value></dd>
        <dt>{t("enrolled")}</dt><dd><When iso={n.agent.enrolled_at} /></dd>
        <dt>{c("created")}</dt><dd><When iso={n.created_at} /></dd>
      </dl>
    </section>
  );
}

export function ComponentTable({ node }: { node: NodeOut }) {
  const t = useText(text);
  const rows = node.agent.components;
  return (
    <section class="card" aria-labelledby="node-components-title">
      <h2 id="node-components-title">{t("components")}</h2>
      {rows.length === 0 ? <Empty>{t("noComponents")}</Empty> : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label={t("components")}>
          <table class="node-components" data-testid="components">
            <thead><tr><th scope="col">{t("component")}</th><th scope="col">{t("state")}</th>
              <th scope="col">{t("error")}</th><th scope="col">{t("hash")}</th></tr></thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.name} data-component={r.name} data-state={r.state}>
                  <th scope="row"><Value>{r.name}</Value></th>
                  <td><ComponentState state={r.state} /></td>
                  <td><Value>{r.error ?? "—"}</Value></td>
                  <td><Value mono>{r.config_hash ? r.config_hash.slice(0, 12) : "—"}</Value></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** Read from the node itself, so only while its agent is connected (read again when it comes online). */
export function NodeInfoCard({ id, online }: { id: string; online: boolean }) {
  const t = useText(text);
  const { locale } = useLocale();
  const hours = new Intl.NumberFormat(tagOf(locale), { style: "unit", unit: "hour", unitDisplay: "short",
                                                       maximumFractionDigits: 1 });
  const info = useLoad(() => (online ? call(api.GET("/api/v1/nodes/{id}/info", { params: { path: { id } } }))
                                      : Promise.resolve(null)), [id, online]);
  const i = info.data;
  return (
    <section class="card" aria-labelledby="node-info-title">
      <div class="section-head">
        <h2 id="node-info-title">{t("info")}</h2>
        <button type="button" disabled={!online} onClick={() => void info.reload()}>{t("reload")}</button>
      </div>
      {!online ? <p class="muted">{t("infoOffline")}</p> : info.error ? <ErrorNotice error={info.error} />
        : !i ? <Loading /> : (
        <dl class="facts" data-testid="node-info">
          <dt>{t("os")}</dt><dd><Value>{i.os}</Value></dd>
          <dt>{t("arch")}</dt><dd><Value>{i.arch}</Value></dd>
          <dt>{t("cpus")}</dt><dd><Num n={i.cpu} /></dd>
          <dt>{t("memory")}</dt><dd><Bytes n={i.mem_used} /> / <Bytes n={i.mem_total} /></dd>
          <dt>{t("swap")}</dt><dd><Bytes n={i.swap_used} /> / <Bytes n={i.swap_total} /></dd>
          <dt>{t("netTotal")}</dt><dd>↓ <Bytes n={i.netrx} /> · ↑ <Bytes n={i.nettx} /></dd>
          <dt>{t("diskIo")}</dt><dd><Bytes n={i.diskr} /> / <Bytes n={i.diskw} /></dd>
          <dt>{t("sysUptime")}</dt><dd><span translate={false} class="num">{hours.format(i.sysup / 3600)}</span></dd>
          <dt>{t("version")}</dt><dd><Value>{i.ver}</Value></dd>
        </dl>
      )}
    </section>
  );
}
