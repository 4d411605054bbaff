// One WireGuard server: its settings, what its node reports (applied, component, interface traffic) and its
// peers, each with its handshake age and traffic from that report, its QR code and .conf.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { may } from "../permissions";
import { href, navigate, type Route } from "../router";
import { ConfirmButton } from "../ui/confirm";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { SelectField, TextField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Pager } from "../ui/pager";
import { Screen } from "../ui/screen";
import { Ago, Bytes, Value, When } from "../ui/values";
import { PeerConfig } from "./wireguard_peer_config";
import { PeerForm } from "./wireguard_peer_form";
import { joined, NodeSide, PeerBadge, ServerBadge, type Peer, type PeerStatus } from "./wireguard_status";
import { wgText } from "./wireguard_text";

const SIZE = 50;

export function WireguardServer({ id, route }: { id: number; route: Route }) {
  const t = useText(wgText);
  const c = useText(common);
  const editor = may(currentUser(), "wireguard.edit");
  const page = Math.max(1, Number(route.query.get("page")) || 1);
  const statusFilter = route.query.get("status") ?? "";
  const search = route.query.get("search") ?? "";
  const [searchInput, setSearchInput] = useState(search);
  const [creating, setCreating] = useState(false);
  const [showing, setShowing] = useState<Peer | null>(null);
  const filter = (q: { page?: number; status?: string; search?: string }) =>
    navigate(`/wireguard/${id}`, { status: statusFilter, search, ...q, page: q.page ?? undefined });

  const server = useLoad(async () => {
    const [detail, status] = await Promise.all([
      call(api.GET("/api/v1/wireguard/servers/{id}", { params: { path: { id } } })),
      call(api.GET("/api/v1/wireguard/servers/{id}/status", { params: { path: { id } } })),
    ]);
    return { detail, status, peers: new Map<number, PeerStatus>(status.clients.map((p) => [p.id, p])) };
  }, [id]);
  const peers = useLoad(() => call(api.GET("/api/v1/wireguard/clients", { params: { query: {
    server_id: id, page, size: SIZE, status: statusFilter === "active" || statusFilter === "disabled" ? statusFilter : null,
    search: search || null } } })), [id, page, statusFilter, search]);
  const reloadAll = async () => { await Promise.all([server.reload(), peers.reload()]); };

  const setPeer = async (peer: Peer, action: "enable" | "disable") => {
    await call(action === "enable"
      ? api.POST("/api/v1/wireguard/clients/{id}/enable", { params: { path: { id: peer.id } } })
      : api.POST("/api/v1/wireguard/clients/{id}/disable", { params: { path: { id: peer.id } } }));
    await reloadAll();
  };
  const removePeer = async (peer: Peer) => {
    await call(api.DELETE("/api/v1/wireguard/clients/{id}", { params: { path: { id: peer.id } } }));
    await reloadAll();
  };

  const s = server.data;
  return (
    <Screen title={c("wireguard")} actions={
      <>
        <a href={href("/wireguard")}>{t("backToServers")}</a>
        <button type="button" onClick={() => void reloadAll()}>{c("refresh")}</button>
        {editor && s && <button type="button" class="primary" onClick={() => setCreating(true)}>{t("newPeer")}</button>}
      </>}>
      <ErrorNotice error={server.error} />
      {!s ? (server.loading && <Loading />) : (
        <div class="grid2 wg-cards">
          <section class="card" aria-labelledby="wg-facts">
            <h2 id="wg-facts">{t("serverFacts")}</h2>
            <dl class="facts">
              <dt>{c("name")}</dt><dd><Value>{s.detail.name}</Value></dd>
              <dt>{c("status")}</dt><dd><ServerBadge status={s.detail.status} /></dd>
              <dt>{t("interface")}</dt><dd><Value mono>{`${s.detail.interface}:${s.detail.listen_port}`}</Value></dd>
              <dt>{t("address")}</dt><dd><Value mono>{joined([s.detail.ipv4_address, s.detail.ipv6_address])}</Value></dd>
              <dt>{t("endpointShort")}</dt><dd><Value mono>{s.detail.endpoint_host ?? "—"}</Value></dd>
              <dt>{t("publicKey")}</dt><dd><Value mono>{s.detail.public_key}</Value></dd>
              <dt>{t("dns")}</dt><dd><Value mono>{joined(s.detail.config.dns_servers)}</Value></dd>
              <dt>{t("allowedIps")}</dt><dd><Value mono>{joined(s.detail.config.allowed_ips)}</Value></dd>
              <dt>{t("mtu")}</dt><dd><Value>{s.detail.config.mtu}</Value></dd>
              <dt>{t("keepalive")}</dt><dd><Value>{s.detail.config.persistent_keepalive}</Value></dd>
            </dl>
          </section>
          <section class="card" aria-labelledby="wg-status">
            <h2 id="wg-status">{t("statusTitle")}</h2>
            <p><NodeSide status={s.status} /></p>
            <dl class="facts">
              <dt>{t("component")}</dt>
              <dd><Value>{s.status.component ? s.status.component.state : "—"}</Value></dd>
              {s.status.component?.error && <><dt>{t("componentError")}</dt>
                <dd><Value>{s.status.component.error}</Value></dd></>}
              <dt>{t("received")}</dt><dd><Bytes n={s.status.interface_stats.rx_bytes} /></dd>
              <dt>{t("sent")}</dt><dd><Bytes n={s.status.interface_stats.tx_bytes} /></dd>
            </dl>
          </section>
        </div>
      )}

      <h2>{t("peers")}</h2>
      <form class="toolbar" role="search" onSubmit={(e) => { e.preventDefault(); filter({ search: searchInput.trim() }); }}>
        <TextField label={t("searchPeers")} name="search" type="search" value={searchInput} onValue={setSearchInput} />
        <SelectField label={c("status")} name="status" value={statusFilter} onValue={(v) => filter({ status: v })}
                     options={[{ value: "", label: t("allStatuses") }, { value: "active", label: t("active") },
                               { value: "disabled", label: t("disabled") }]} />
        <button type="submit">{c("search")}</button>
      </form>
      <ErrorNotice error={peers.error} />
      {!peers.data ? (peers.loading && <Loading />) : peers.data.items.length === 0 ? <Empty>{t("noPeers")}</Empty> : (
        <>
          <div class="table-wrap">
            <table data-testid="wg-peers">
              <thead><tr>
                <th>{c("name")}</th><th>{t("address")}</th><th>{c("status")}</th><th>{t("handshake")}</th>
                <th>{t("traffic")}</th><th>{t("expires")}</th><th>{c("actions")}</th>
              </tr></thead>
              <tbody>
                {peers.data.items.map((p) => {
                  const live = s?.peers.get(p.id);
                  return (
                    <tr key={p.id} data-peer={p.name}>
                      <td><Value>{p.name}</Value></td>
                      <td><Value mono>{joined([p.ipv4_address, p.ipv6_address])}</Value></td>
                      <td><PeerBadge status={p.status} /></td>
                      <td><Ago iso={live?.latest_handshake ?? p.last_handshake} /></td>
                      <td class="num"><Bytes n={live?.transfer_rx ?? p.bytes_received} />{" / "}
                        <Bytes n={live?.transfer_tx ?? p.bytes_sent} /></td>
                      <td>{p.expires_at ? <When iso={p.expires_at} /> : <span class="muted">{c("never")}</span>}</td>
                      <td><div class="wg-actions">
                        <button type="button" onClick={() => setShowing(p)}>{t("showConfig")}</button>
                        {editor && (p.status === "active"
                          ? <ConfirmButton label={t("disable")} title={t("disable")} onConfirm={() => setPeer(p, "disable")}>
                              <p><Value>{p.name}</Value></p></ConfirmButton>
                          : <button type="button" onClick={() => void setPeer(p, "enable")}>{t("enable")}</button>)}
                        {editor && (
                          <ConfirmButton label={c("delete")} danger confirmLabel={c("delete")}
                                         title={t("deletePeerTitle")} onConfirm={() => removePeer(p)}>
                            <p><Value>{p.name}</Value></p><p>{c("cannotUndo")}</p></ConfirmButton>
                        )}
                      </div></td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <Pager page={page} size={SIZE} total={peers.data.total} onPage={(n) => filter({ page: n })} />
        </>
      )}
      {creating && <PeerForm serverId={id} onClose={() => setCreating(false)}
                             onCreated={(p) => { setCreating(false); void reloadAll(); setShowing(p); }} />}
      {showing && <PeerConfig peer={showing} onClose={() => setShowing(null)} />}
    </Screen>
  );
}
