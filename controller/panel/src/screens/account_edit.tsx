// Changing an account: its role, status and permissions (narrowed below the role's, never beyond), and an
// administrator's password reset (by default the account must choose its own at the next sign-in).
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { FormButtons, SelectField, TextField } from "../ui/form";
import { Modal } from "../ui/modal";
import { Value } from "../ui/values";
import { ROLES, STATUSES, type Account, type Role, type Status } from "./account_form";
import { accountText, PERMISSIONS } from "./account_text";

type Update = components["schemas"]["AccountUpdate"];

export function AccountEdit({ account, self, onClose, onSaved }: {
  account: Account; self: boolean; onClose: () => void; onSaved: (account: Account) => void;
}) {
  const t = useText(accountText);
  const c = useText(common);
  const [role, setRole] = useState<Role>(account.role);
  const [status, setStatus] = useState<Status>(account.status);
  const [defaults, setDefaults] = useState(true);
  const [chosen, setChosen] = useState<Set<string>>(() => new Set(
    account.permissions.includes("*") ? PERMISSIONS : account.permissions));
  const [off2fa, setOff2fa] = useState(false);
  const { busy, error, run } = useAction();
  const toggle = (p: string, on: boolean) => {
    const next = new Set(chosen);
    if (on) next.add(p); else next.delete(p);
    setChosen(next);
  };
  const submit = () => run(async () => {
    // only what changed: the API refuses an account changing its own role or status even to the same value
    const body: Update = {};
    if (role !== account.role) body.role = role;
    if (status !== account.status) body.status = status;
    if (!defaults) body.permissions = PERMISSIONS.filter((p) => chosen.has(p));
    else if (role === account.role && !self) body.permissions = null;
    if (off2fa) body.two_factor_enabled = false;
    onSaved(await call(api.PATCH("/api/v1/users/{id}", { params: { path: { id: account.id } }, body })));
  });
  return (
    <Modal title={t("editTitle")} onClose={onClose} testid="account-edit">
      <p class="modal-subject"><Value>{account.username}</Value></p>
      <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <SelectField label={t("role")} name="role" error={error} value={role} onValue={(v) => setRole(v as Role)}
                     options={ROLES.map((r) => ({ value: r, label: t(r) }))} />
        <SelectField label={c("status")} name="status" error={error} value={status}
                     onValue={(v) => setStatus(v as Status)} options={STATUSES.map((s) => ({ value: s, label: t(s) }))} />
        <fieldset class="account-perms">
          <legend>{t("permissions")}</legend>
          <label class="check"><input type="checkbox" checked={defaults} disabled={self}
                                      onChange={(e) => setDefaults(e.currentTarget.checked)} />{t("roleDefaults")}</label>
          {!defaults && (
            <div class="account-perm-grid">
              {PERMISSIONS.map((p) => (
                <label class="check" key={p}>
                  <input type="checkbox" checked={chosen.has(p)} onChange={(e) => toggle(p, e.currentTarget.checked)} />
                  <span translate={false} class="mono">{p}</span>
                </label>
              ))}
            </div>
          )}
        </fieldset>
        {account.two_factor_enabled && !self && (
          <label class="check"><input type="checkbox" checked={off2fa} onChange={(e) => setOff2fa(e.currentTarget.checked)} />
            {t("turnOff2fa")}</label>
        )}
        <ErrorNotice error={error} />
        <FormButtons onCancel={onClose} submit={c("save")} busy={busy} />
      </form>
    </Modal>
  );
}

export function PasswordReset({ account, onClose, onDone }: {
  account: Account; onClose: () => void; onDone: (account: Account) => void;
}) {
  const t = useText(accountText);
  const [password, setPassword] = useState("");
  const [force, setForce] = useState(true);
  const [email, setEmail] = useState(false);
  const { busy, error, run } = useAction();
  const submit = () => run(async () => {
    onDone(await call(api.POST("/api/v1/users/{id}/reset-password", { params: { path: { id: account.id } },
      body: { new_password: password, force_change: force, send_email: email } })));
  });
  return (
    <Modal title={t("resetTitle")} onClose={onClose} testid="account-reset">
      <p class="modal-subject"><Value>{account.username}</Value></p>
      <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <TextField label={t("newPassword")} name="new_password" error={error} value={password} onValue={setPassword}
                   type="password" autocomplete="new-password" required autoFocus />
        <label class="check"><input type="checkbox" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} />
          {t("forceChange")}</label>
        <label class="check"><input type="checkbox" checked={email} disabled={!account.email}
                                    onChange={(e) => setEmail(e.currentTarget.checked)} />{t("sendEmail")}</label>
        <ErrorNotice error={error} />
        <FormButtons onCancel={onClose} submit={t("reset")} busy={busy} />
      </form>
    </Modal>
  );
}
