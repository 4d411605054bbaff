// Hash routes (#/nodes/7): the controller serves one page at /ui/ and every screen is a fragment of it, so a
// reload or a shared link opens the same screen with no server-side routing.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  /** the path without its query: "/nodes/7" */
  path: string;
  /** the path's segments: ["nodes", "7"] */
  parts: string[];
  /** the query after "?" in the fragment: #/subscribers?search=bob&page=2 */
  query: URLSearchParams;
}

export function currentRoute(): Route {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = raw.split("?", 2);
  return { path, parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

/** Go to a screen: navigate("/nodes/7") or navigate("/subscribers", {search: "bob"}). */
export function navigate(path: string, query?: Record<string, string | number | undefined | null>): void {
  location.hash = href(path, query).slice(1);
}

/** The href of a screen, for <a href>. Empty query values are left out. */
export function href(path: string, query?: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ""}`;
}
