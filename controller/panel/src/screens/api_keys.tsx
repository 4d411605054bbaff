// The signed-in account's API keys: the list shows a key's prefix only; a new or rotated key is shown once, in a
// dialog, and never again. Revoking and rotating ask first.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { may } from "../permissions";
import { navigate, useRoute } from "../router";
import { ConfirmButton } from "../ui/confirm";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Pager } from "../ui/pager";
import { Badge, Screen } from "../ui/screen";
import { Ago, Value, When } from "../ui/values";
import { KeyForm } from "./api_key_form";
import { KeyReveal } from "./api_key_reveal";
import { keyText } from "./api_key_text";
import "./api_keys.css";

type Key = components["schemas"]["ApiKeyOut"];
const SIZE = 50;
const TONE = { active: "ok", revoked: "bad", expired: "idle" } as const;

export function ApiKeys() {
  const t = useText(keyText);
  const c = useText(common);
  const route = useRoute();
  const user = currentUser();
  const manage = may(user, "keys.manage");
  const page = Math.max(1, Number(route.query.get("page")) || 1);
  const [creating, setCreating] = useState(false);
  const [shown, setShown] = useState<string | null>(null);
  const keys = useLoad(() => call(api.GET("/api/v1/auth/api-keys", {
    params: { query: { page, size: SIZE, account_id: user?.id ?? null } } })), [page, user?.id]);

  const revoke = async (key: Key) => {
    await call(api.DELETE("/api/v1/auth/api-keys/{id}", { params: { path: { id: key.id } } }));
    await keys.reload();
  };
  const rotate = async (key: Key) => {
    const made = await call(api.POST("/api/v1/auth/api-keys/{id}/rotate", { params: { path: { id: key.id } } }));
    setShown(made.api_key);
    await keys.reload();
  };

  return (
    <Screen title={c("apiKeys")} actions={manage && (
      <button type="button" class="primary" onClick={() => setCreating(true)}>{t("newKey")}</button>)}>
      {creating && <KeyForm onClose={() => setCreating(false)}
                            onCreated={(k) => { setCreating(false); setShown(k.api_key); void keys.reload(); }} />}
      {shown && <KeyReveal apiKey={shown} onClose={() => setShown(null)} />}
      <ErrorNotice error={keys.error} />
      {!keys.data ? (keys.loading && <Loading />) : keys.data.items.length === 0 ? <Empty>{t("noKeys")}</Empty> : (
        <>
          <div class="table-wrap">
            <table data-testid="api-keys">
              <thead><tr>
                <th>{c("name")}</th><th>{t("prefix")}</th><th>{t("accessLevel")}</th><th>{t("scope")}</th>
                <th>{t("expires")}</th><th>{t("lastUsed")}</th><th>{c("status")}</th>
                {manage && <th>{c("actions")}</th>}
              </tr></thead>
              <tbody>
                {keys.data.items.map((k) => (
                  <tr key={k.id} data-key={k.name}>
                    <td><Value>{k.name}</Value>{k.description && <small class="muted key-desc"><Value>{k.description}</Value></small>}</td>
                    <td><Value mono>{`${k.prefix}…`}</Value></td>
                    <td>{t(k.access_level)}</td>
                    <td class="key-scope">
                      {k.allowed_ips ? <Value mono>{k.allowed_ips.join(", ")}</Value> : <span class="muted">{t("anyAddress")}</span>}
                      <br />
                      {k.allowed_endpoints ? <Value mono>{k.allowed_endpoints.join(", ")}</Value>
                        : <span class="muted">{t("anyPath")}</span>}
                    </td>
                    <td>{k.expires_at ? <When iso={k.expires_at} /> : <span class="muted">{c("never")}</span>}</td>
                    <td>{k.last_used ? <Ago iso={k.last_used} /> : <span class="muted">{c("never")}</span>}</td>
                    <td><Badge tone={TONE[k.status]}>{t(k.status)}</Badge></td>
                    {manage && (
                      <td><div class="key-actions">
                        {k.status === "active" && <>
                          <ConfirmButton label={t("rotate")} title={t("rotateTitle")}
                                         confirmLabel={t("rotate")} onConfirm={() => rotate(k)}>
                            <p><Value>{k.name}</Value></p><p>{t("rotateHelp")}</p></ConfirmButton>
                          <ConfirmButton label={t("revoke")} danger title={t("revokeTitle")}
                                         confirmLabel={t("revoke")} onConfirm={() => revoke(k)}>
                            <p><Value>{k.name}</Value></p><p>{t("revokeHelp")}</p></ConfirmButton>
                        </>}
                      </div></td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager page={page} size={SIZE} total={keys.data.total} onPage={(p) => navigate("/keys", { page: p })} />
        </>
      )}
    </Screen>
  );
}
