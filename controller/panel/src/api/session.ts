// The signed-in session: the access token (memory only) and the refresh token (sessionStorage, or localStorage
// when "remember me" was ticked: the operator asked to stay signed in). The access token is refreshed shortly
// before it expires, once however many requests need it at that moment.
import type { components } from "./schema";

export type Tokens = components["schemas"]["TokensOut"];
export type SignedInUser = components["schemas"]["UserOut"];

const KEY = "vpnfleet.session";
const EARLY_MS = 30_000;

interface Stored { refresh: string; remember: boolean; user: SignedInUser }

let access: { token: string; expires: number } | null = null;
let stored: Stored | null = load();
let refreshing: Promise<string | null> | null = null;
const listeners = new Set<(user: SignedInUser | null) => void>();

function load(): Stored | null {
  const raw = sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
  try { return raw ? (JSON.parse(raw) as Stored) : null; } catch { return null; }
}

function persist(): void {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
  if (stored) (stored.remember ? localStorage : sessionStorage).setItem(KEY, JSON.stringify(stored));
}

export function currentUser(): SignedInUser | null {
  return stored?.user ?? null;
}

export function onSessionChange(listener: (user: SignedInUser | null) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function notify(): void {
  for (const l of listeners) l(currentUser());
}

/** Keep the tokens of a completed sign-in (login, verify-2fa, 2fa/enable or refresh). */
export function begin(tokens: Tokens, remember: boolean): void {
  access = { token: tokens.access_token, expires: Date.now() + tokens.expires_in * 1000 };
  stored = { refresh: tokens.refresh_token, remember, user: tokens.user };
  persist();
  notify();
}

/** Forget the session (signed out, or the controller ended it). */
export function end(): void {
  access = null;
  stored = null;
  persist();
  notify();
}

/** A valid access token, refreshed first when it is about to expire; null when there is no session. */
export async function accessToken(): Promise<string | null> {
  if (access && access.expires - EARLY_MS > Date.now()) return access.token;
  if (!stored) return null;
  refreshing ??= refresh().finally(() => { refreshing = null; });
  return refreshing;
}

async function refresh(): Promise<string | null> {
  const session = stored;
  if (!session) return null;
  let response: Response;
  try {
    response = await fetch("/api/v1/auth/refresh", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: session.refresh }),
    });
  } catch {
    return null; // offline: keep the session, the next request tries again
  }
  if (!response.ok) {
    end();
    return null;
  }
  begin((await response.json()) as Tokens, session.remember);
  return access!.token;
}
