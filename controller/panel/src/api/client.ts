// The panel's API client: openapi-fetch typed by schema.d.ts, which openapi-typescript generates from the
// controller's /openapi.json (`make panel`). A route or field the API does not declare does not compile.
import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";
import { accessToken, end } from "./session";

/** An answer of the API other than 2xx, as its error body says ({error: {code, message, details}}). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** per field: what is wrong with it (422), or what the refusal names (403's `required`) */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }

  /** The first field the API named, with its message, for showing beside the form. */
  get field(): { name: string; message: string } | null {
    for (const [name, message] of Object.entries(this.details)) {
      if (typeof message === "string") return { name, message };
    }
    return null;
  }
}

/** The controller could not be reached at all. */
export class NetworkError extends Error {}

const PUBLIC = ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/verify-2fa"];

const auth: Middleware = {
  async onRequest({ request, schemaPath }) {
    if (PUBLIC.includes(schemaPath) || request.headers.has("Authorization")) return request;
    const token = await accessToken();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: "" });
api.use(auth);

/** The error body of a failed answer as an ApiError (whatever shape it has). */
export async function errorOf(response: Response, body?: unknown): Promise<ApiError> {
  let parsed = body;
  if (parsed === undefined) {
    try { parsed = await response.json(); } catch { parsed = null; }
  }
  const error = (parsed as { error?: unknown } | null)?.error;
  if (error && typeof error === "object") {
    const e = error as { code?: string; message?: string; details?: Record<string, unknown> | null };
    return new ApiError(response.status, e.code ?? "ERROR", e.message ?? response.statusText, e.details ?? {});
  }
  return new ApiError(response.status, "ERROR", typeof error === "string" ? error : response.statusText);
}

/** The data of an openapi-fetch call, or an ApiError / NetworkError thrown. A 401 ends the session. */
export async function call<T>(request: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await request;
  } catch (e) {
    throw new NetworkError(String(e));
  }
  if (result.response.ok) return result.data as T;
  const err = await errorOf(result.response, result.error);
  if (err.status === 401) end();
  throw err;
}
