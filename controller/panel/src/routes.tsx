// Every screen of the panel: its hash path, its navigation label, what the account needs to see it.
// One table, so the navigation, the router and the browser tests' walk over every screen agree.
import type { JSX } from "preact";
import type { common } from "./i18n/common";
import type { Permission } from "./permissions";
import type { Route } from "./router";
import { Accounts } from "./screens/accounts";
import { ApiKeys } from "./screens/api_keys";
import { Fleet } from "./screens/fleet";
import { Mine } from "./screens/mine";
import { NodeCreate } from "./screens/node_create";
import { NodeDetail } from "./screens/node_detail";
import { Operations } from "./screens/operations";
import { Settings } from "./screens/settings";
import { SubscriberDetail } from "./screens/subscriber_detail";
import { Subscribers } from "./screens/subscribers";
import { Wireguard } from "./screens/wireguard";

export interface ScreenEntry {
  /** the first segment of the hash path: #/fleet, #/nodes/7 */
  section: string;
  /** its navigation label (a key of the common catalog); no label: reached from another screen only */
  nav?: keyof typeof common.en;
  /** a `user` account may see it (its own things only); every other screen is refused to owner-scoped roles */
  owned?: boolean;
  /** what the account needs to see it (none: every signed-in account) */
  permission?: Permission;
  render: (route: Route) => JSX.Element;
}

export const SCREENS: ScreenEntry[] = [
  { section: "fleet", nav: "fleet", permission: "nodes.view", render: () => <Fleet /> },
  { section: "nodes", permission: "nodes.view",
    render: (r) => (r.parts[1] === "new" ? <NodeCreate /> : <NodeDetail id={r.parts[1] ?? ""} />) },
  { section: "subscribers", nav: "subscribers", permission: "subscribers.view",
    render: (r) => (r.parts[1] ? <SubscriberDetail id={r.parts[1]} /> : <Subscribers route={r} />) },
  { section: "wireguard", nav: "wireguard", permission: "wireguard.view", render: (r) => <Wireguard route={r} /> },
  { section: "operations", nav: "operations", permission: "operations.view", render: (r) => <Operations route={r} /> },
  { section: "accounts", nav: "accounts", permission: "users.view", render: (r) => <Accounts route={r} /> },
  { section: "mine", nav: "mine", owned: true, render: () => <Mine /> },
  { section: "keys", nav: "apiKeys", owned: true, permission: "keys.manage", render: () => <ApiKeys /> },
  { section: "settings", nav: "settings", owned: true, render: () => <Settings /> },
];
