// How a screen shows that it is loading, empty or failed. An error shows the API's own message and the field
// it names, so the operator reads what the controller said, not a generic "failed".
import { ApiError, NetworkError } from "../api/client";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";

export function ErrorNotice({ error }: { error: unknown }) {
  const t = useText(common);
  if (!error) return null;
  let message: string;
  let field: { name: string; message: string } | null = null;
  if (error instanceof ApiError) {
    message = error.status === 403 && error.code === "INSUFFICIENT_PERMISSIONS" ? `${t("forbidden")} ${error.message}`
      : error.message;
    field = error.field;
  } else if (error instanceof NetworkError) {
    message = t("networkError");
  } else {
    message = String(error instanceof Error ? error.message : error);
  }
  return (
    <div class="notice error" role="alert">
      <strong>{t("errorTitle")}</strong>
      <p translate={false} data-error-message>{message}</p>
      {field && field.message !== message && (
        <p data-error-field={field.name}>{t("errorField", { field: field.name, message: field.message })}</p>
      )}
    </div>
  );
}

/** The message the API gave for one field of a form (422's details), if any. */
export function fieldError(error: unknown, name: string): string | undefined {
  if (!(error instanceof ApiError)) return undefined;
  const value = error.details[name];
  return typeof value === "string" ? value : undefined;
}

export function Loading() {
  const t = useText(common);
  return <p class="muted" role="status" aria-live="polite">{t("loading")}</p>;
}

export function Empty({ children }: { children?: string }) {
  const t = useText(common);
  return <p class="muted">{children ?? t("empty")}</p>;
}
