// A new account: the API checks the password policy and names the field it refuses (shown under it).
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { FormButtons, SelectField, TextField } from "../ui/form";
import { Modal } from "../ui/modal";
import { accountText } from "./account_text";

export type Account = components["schemas"]["AccountOut"];
export type Role = Account["role"];
export type Status = Account["status"];
export const ROLES: Role[] = ["admin", "manager", "viewer", "user"];
export const STATUSES: Status[] = ["active", "inactive", "suspended"];

export function AccountForm({ onClose, onCreated }: { onClose: () => void; onCreated: (account: Account) => void }) {
  const t = useText(accountText);
  const c = useText(common);
  const [username, setUsername] = useState("");
  const [email, setEmail] = useState("");
  const [fullName, setFullName] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const [welcome, setWelcome] = useState(false);
  const { busy, error, run } = useAction();
  const submit = () => run(async () => {
    onCreated(await call(api.POST("/api/v1/users", { body: {
      username, email: email || null, full_name: fullName, password, role, status: "active",
      two_factor_enabled: false, send_welcome_email: welcome && !!email } })));
  });
  return (
    <Modal title={t("newAccount")} onClose={onClose} testid="account-form">
      <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <TextField label={t("username")} name="username" error={error} value={username} onValue={setUsername}
                   autocomplete="off" required autoFocus />
        <TextField label={t("password")} name="password" error={error} value={password} onValue={setPassword}
                   type="password" autocomplete="new-password" required />
        <SelectField label={t("role")} name="role" error={error} value={role} onValue={(v) => setRole(v as Role)}
                     options={ROLES.map((r) => ({ value: r, label: t(r) }))} />
        <TextField label={t("email")} name="email" error={error} value={email} onValue={setEmail} type="email" />
        <TextField label={t("fullName")} name="full_name" error={error} value={fullName} onValue={setFullName} />
        <label class="check"><input type="checkbox" checked={welcome} disabled={!email}
                                    onChange={(e) => setWelcome(e.currentTarget.checked)} />{t("welcome")}</label>
        <ErrorNotice error={error} />
        <FormButtons onCancel={onClose} submit={c("create")} busy={busy} />
      </form>
    </Modal>
  );
}
