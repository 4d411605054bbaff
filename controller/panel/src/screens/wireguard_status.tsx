// How a WireGuard server's and peer's states read: translated badges, one place for both screens.
import type { components } from "../api/schema";
import { useText } from "../i18n/text";
import { Badge } from "../ui/screen";
import { wgText } from "./wireguard_text";

export type Server = components["schemas"]["ServerListed"];
export type ServerDetail = components["schemas"]["ServerOut"];
export type ServerStatus = components["schemas"]["ServerStatusOut"];
export type Peer = components["schemas"]["ClientOut"];
export type PeerStatus = components["schemas"]["PeerStatus"];

export function ServerBadge({ status }: { status: Server["status"] }) {
  const t = useText(wgText);
  return <Badge tone={status === "running" ? "ok" : "idle"}>{t(status)}</Badge>;
}

export function PeerBadge({ status }: { status: Peer["status"] }) {
  const t = useText(wgText);
  return <Badge tone={status === "active" ? "ok" : "idle"}>{t(status)}</Badge>;
}

/** The node's side of a server: online, applied, and the component's error if it has one. */
export function NodeSide({ status }: { status: ServerStatus | undefined }) {
  const t = useText(wgText);
  if (!status) return <span class="muted">—</span>;
  return (
    <span class="wg-node-side">
      <Badge tone={status.node_online ? "ok" : "bad"}>{t(status.node_online ? "nodeOnline" : "nodeOffline")}</Badge>
      {" "}
      <Badge tone={status.applied ? "ok" : "warn"}>{t(status.applied ? "applied" : "pending")}</Badge>
      {status.component?.error && <Badge tone="bad">{t("componentError")}</Badge>}
    </span>
  );
}

/** "a,b" of a list of addresses, as data. */
export function joined(values: (string | null | undefined)[]): string {
  return values.filter(Boolean).join(", ") || "—";
}
