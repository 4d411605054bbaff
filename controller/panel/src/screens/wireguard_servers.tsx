// The WireGuard servers: each with the node's side of its status (online, applied), start/stop/delete, and a
// form for a new one.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { may } from "../permissions";
import { href, navigate, useRoute } from "../router";
import { ConfirmButton } from "../ui/confirm";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Pager } from "../ui/pager";
import { Screen } from "../ui/screen";
import { Num, Value } from "../ui/values";
import { ServerForm } from "./wireguard_server_form";
import { NodeSide, ServerBadge, type Server, type ServerStatus } from "./wireguard_status";
import { wgText } from "./wireguard_text";

const SIZE = 25;

interface Listed { page: { items: Server[]; total: number }; status: Map<number, ServerStatus>; nodes: Map<string, string> }

export function WireguardServers() {
  const t = useText(wgText);
  const c = useText(common);
  const route = useRoute();
  const page = Math.max(1, Number(route.query.get("page")) || 1);
  const editor = may(currentUser(), "wireguard.edit");
  const [creating, setCreating] = useState(false);
  const list = useLoad<Listed>(async () => {
    const [servers, nodes] = await Promise.all([
      call(api.GET("/api/v1/wireguard/servers", { params: { query: { page, size: SIZE } } })),
      may(currentUser(), "nodes.view")
        ? call(api.GET("/api/v1/nodes", { params: { query: { size: 500 } } })).then((p) => p.items)
        : Promise.resolve([]),
    ]);
    // one status each: what the node applied and whether it is online (the list itself has only the desired side)
    const statuses = await Promise.all(servers.items.map((s) =>
      call(api.GET("/api/v1/wireguard/servers/{id}/status", { params: { path: { id: s.id } } })).catch(() => null)));
    const status = new Map<number, ServerStatus>();
    statuses.forEach((s) => { if (s) status.set(s.id, s); });
    return { page: servers, status, nodes: new Map(nodes.map((n) => [n.id, n.name])) };
  }, [page]);

  const act = async (id: number, action: "start" | "stop") => {
    await call(action === "start"
      ? api.POST("/api/v1/wireguard/servers/{id}/start", { params: { path: { id } } })
      : api.POST("/api/v1/wireguard/servers/{id}/stop", { params: { path: { id } } }));
    await list.reload();
  };
  const remove = async (id: number) => {
    await call(api.DELETE("/api/v1/wireguard/servers/{id}", { params: { path: { id } } }));
    await list.reload();
  };

  return (
    <Screen title={c("wireguard")} actions={editor && (
      <button type="button" class="primary" onClick={() => setCreating(true)}>{t("newServer")}</button>)}>
      {creating && <ServerForm nodes={list.data?.nodes ?? new Map()} onClose={() => setCreating(false)}
                               onCreated={(s) => { setCreating(false); navigate(`/wireguard/${s.id}`); }} />}
      <ErrorNotice error={list.error} />
      {!list.data ? (list.loading && <Loading />) : list.data.page.items.length === 0 ? <Empty>{t("noServers")}</Empty> : (
        <>
          <div class="table-wrap">
            <table data-testid="wg-servers">
              <thead><tr>
                <th>{c("name")}</th><th>{t("node")}</th><th>{t("interface")}</th><th>{t("address")}</th>
                <th>{t("clients")}</th><th>{c("status")}</th><th>{t("statusTitle")}</th>
                {editor && <th>{c("actions")}</th>}
              </tr></thead>
              <tbody>
                {list.data.page.items.map((s) => (
                  <tr key={s.id} data-server={s.id}>
                    <td><a href={href(`/wireguard/${s.id}`)}><Value>{s.name}</Value></a></td>
                    <td><Value>{list.data!.nodes.get(s.node_id) ?? s.node_id.slice(0, 8)}</Value></td>
                    <td><Value mono>{`${s.interface}:${s.listen_port}`}</Value></td>
                    <td><Value mono>{[s.ipv4_address, s.ipv6_address].filter(Boolean).join(" ") || "—"}</Value></td>
                    <td><Num n={s.clients_count} /></td>
                    <td><ServerBadge status={s.status} /></td>
                    <td><NodeSide status={list.data!.status.get(s.id)} /></td>
                    {editor && (
                      <td><div class="wg-actions">
                        {s.status === "stopped"
                          ? <button type="button" onClick={() => void act(s.id, "start")}>{t("start")}</button>
                          : <ConfirmButton label={t("stop")} title={t("stopTitle")} onConfirm={() => act(s.id, "stop")}>
                              <p><Value>{s.name}</Value></p><p>{t("stopHelp")}</p></ConfirmButton>}
                        <ConfirmButton label={c("delete")} danger title={t("deleteServerTitle")}
                                       confirmLabel={c("delete")} onConfirm={() => remove(s.id)}>
                          <p><Value>{s.name}</Value></p><p>{t("deleteServerHelp", { count: s.clients_count })}</p>
                        </ConfirmButton>
                      </div></td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager page={page} size={SIZE} total={list.data.page.total}
                 onPage={(p) => navigate("/wireguard", { page: p })} />
        </>
      )}
    </Screen>
  );
}
