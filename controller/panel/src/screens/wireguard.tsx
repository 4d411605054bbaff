// WireGuard: #/wireguard lists the servers (with their live status), #/wireguard/<id> is one server, its
// status and its peers.
import type { Route } from "../router";
import { WireguardServer } from "./wireguard_server";
import { WireguardServers } from "./wireguard_servers";
import "./wireguard.css";

export function Wireguard({ route }: { route: Route }) {
  const id = Number(route.parts[1]);
  return route.parts[1] && Number.isSafeInteger(id) && id > 0
    ? <WireguardServer id={id} route={route} />
    : <WireguardServers />;
}
