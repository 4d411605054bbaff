// Accounts: paged and filtered by the API (search, role, status in the hash), with create, edit (role, status,
// permissions), password reset and delete for an account with users.manage; without it, the list only.
import { useEffect, useState } from "preact/hooks";
import { api, call } from "../api/client";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { may } from "../permissions";
import { navigate, type Route } from "../router";
import { ConfirmButton } from "../ui/confirm";
import { Empty, ErrorNotice, Loading } from "../ui/feedback";
import { SelectField, TextField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Pager } from "../ui/pager";
import { Badge, Screen } from "../ui/screen";
import { Ago, Value } from "../ui/values";
import { AccountEdit, PasswordReset } from "./account_edit";
import { AccountForm, ROLES, STATUSES, type Account } from "./account_form";
import { accountText } from "./account_text";
import "./accounts.css";

const SIZE = 50;
const TONE = { active: "ok", inactive: "idle", suspended: "bad" } as const;

export function Accounts({ route }: { route: Route }) {
  const t = useText(accountText);
  const c = useText(common);
  const me = currentUser();
  const manage = may(me, "users.manage");
  const page = Math.max(1, Number(route.query.get("page")) || 1);
  const search = route.query.get("search") ?? "";
  const role = route.query.get("role") ?? "";
  const status = route.query.get("status") ?? "";
  const [searchInput, setSearchInput] = useState(search);
  useEffect(() => setSearchInput(search), [search]);
  const [dialog, setDialog] = useState<{ kind: "create" } | { kind: "edit" | "reset"; account: Account } | null>(null);
  const [notice, setNotice] = useState("");
  const list = useLoad(() => call(api.GET("/api/v1/users", { params: { query: {
    page, size: SIZE, search: search || null,
    role: ROLES.find((r) => r === role) ?? null, status: STATUSES.find((s) => s === status) ?? null } } })),
  [page, search, role, status]);
  const go = (q: { search?: string; role?: string; status?: string; page?: number }) =>
    navigate("/accounts", { search, role, status, ...q, page: q.page && q.page > 1 ? q.page : undefined });
  const done = (message: string) => { setDialog(null); setNotice(message); void list.reload(); };
  const remove = async (a: Account) => {
    await call(api.DELETE("/api/v1/users/{id}", { params: { path: { id: a.id } } }));
    await list.reload();
  };

  return (
    <Screen title={c("accounts")} actions={manage && (
      <button type="button" class="primary" onClick={() => { setNotice(""); setDialog({ kind: "create" }); }}>
        {t("newAccount")}</button>)}>
      {dialog?.kind === "create" && <AccountForm onClose={() => setDialog(null)} onCreated={() => done(t("saved"))} />}
      {dialog?.kind === "edit" && <AccountEdit account={dialog.account} self={dialog.account.id === me?.id}
                                               onClose={() => setDialog(null)} onSaved={() => done(t("saved"))} />}
      {dialog?.kind === "reset" && <PasswordReset account={dialog.account} onClose={() => setDialog(null)}
                                                  onDone={() => done(t("resetDone"))} />}
      <form class="toolbar" role="search" onSubmit={(e) => { e.preventDefault(); go({ search: searchInput.trim() }); }}>
        <TextField label={t("searchAccounts")} name="search" type="search" error={list.error} value={searchInput}
                   onValue={setSearchInput} />
        <SelectField label={t("role")} name="role" value={role} onValue={(v) => go({ role: v })}
                     options={[{ value: "", label: t("anyRole") }, ...ROLES.map((r) => ({ value: r, label: t(r) }))]} />
        <SelectField label={c("status")} name="status" value={status} onValue={(v) => go({ status: v })}
                     options={[{ value: "", label: t("anyStatus") }, ...STATUSES.map((s) => ({ value: s, label: t(s) }))]} />
        <button type="submit">{c("search")}</button>
      </form>
      {notice && <p role="status" class="notice">{notice}</p>}
      <ErrorNotice error={list.error} />
      {!list.data ? (list.loading && <Loading />) : list.data.items.length === 0 ? <Empty>{t("noAccounts")}</Empty> : (
        <>
          <div class="table-wrap">
            <table data-testid="accounts">
              <thead><tr>
                <th>{t("username")}</th><th>{t("role")}</th><th>{c("status")}</th><th>{t("twoFactor")}</th>
                <th>{t("lastLogin")}</th>{manage && <th>{c("actions")}</th>}
              </tr></thead>
              <tbody>
                {list.data.items.map((a) => (
                  <tr key={a.id} data-account={a.username}>
                    <td>
                      <Value>{a.username}</Value>{a.id === me?.id && <span class="muted"> ({t("you")})</span>}
                      {a.email && <small class="muted account-email"><Value>{a.email}</Value></small>}
                    </td>
                    <td>{t(a.role)}</td>
                    <td>
                      <Badge tone={TONE[a.status]}>{t(a.status)}</Badge>
                      {a.locked_until && <> <Badge tone="warn">{t("locked")}</Badge></>}
                      {a.must_change_password && <> <Badge tone="warn">{t("mustChange")}</Badge></>}
                    </td>
                    <td>{a.two_factor_enabled ? t("twoFactorOn") : t("twoFactorOff")}</td>
                    <td>{a.last_login ? <Ago iso={a.last_login} /> : <span class="muted">{c("never")}</span>}</td>
                    {manage && (
                      <td><div class="account-actions">
                        <button type="button" onClick={() => { setNotice(""); setDialog({ kind: "edit", account: a }); }}>
                          {t("edit")}</button>
                        <button type="button" onClick={() => { setNotice(""); setDialog({ kind: "reset", account: a }); }}>
                          {t("resetPassword")}</button>
                        {a.id !== me?.id && (
                          <ConfirmButton label={c("delete")} danger confirmLabel={c("delete")}
                                         title={t("deleteTitle")} onConfirm={() => remove(a)}>
                            <p><Value>{a.username}</Value></p><p>{t("deleteHelp")}</p></ConfirmButton>
                        )}
                      </div></td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager page={page} size={SIZE} total={list.data.total} onPage={(p) => go({ page: p })} />
        </>
      )}
    </Screen>
  );
}
