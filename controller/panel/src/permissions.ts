// What the signed-in account may do, from the `permissions` its sign-in answered ("*": everything). The panel
// hides what the account cannot use; the controller still decides every request.
import type { SignedInUser } from "./api/session";

export type Permission =
  | "nodes.view" | "nodes.edit" | "logs.view" | "subscribers.view" | "subscribers.edit" | "wireguard.view"
  | "wireguard.edit" | "nodepass.view" | "nodepass.edit" | "ipv6.view" | "ipv6.edit" | "operations.view"
  | "system.view" | "system.edit" | "keys.manage" | "keys.manage_all" | "users.view" | "users.manage";

export function may(user: SignedInUser | null, permission: Permission): boolean {
  if (!user) return false;
  return user.permissions.includes("*") || user.permissions.includes(permission);
}

/** A `user` account sees only what it owns: its subscriptions and peers, on the "mine" screen. */
export function ownerScoped(user: SignedInUser | null): boolean {
  return user?.role === "user";
}
