// A new API key for the signed-in account: a name, an access level and, optionally, an expiry, the addresses
// and paths it may be used from and its own rate. The answer holds the key, which the caller shows once.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { FormButtons, SelectField, TextField } from "../ui/form";
import { Modal } from "../ui/modal";
import { keyText } from "./api_key_text";

export type Created = components["schemas"]["ApiKeyCreated"];
type Level = components["schemas"]["ApiKeyBody"]["access_level"];

/** A comma-separated field as the list the API takes; empty: null (no restriction). */
function listOrNull(text: string): string[] | null {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

export function KeyForm({ onClose, onCreated }: { onClose: () => void; onCreated: (key: Created) => void }) {
  const t = useText(keyText);
  const c = useText(common);
  const [name, setName] = useState("");
  const [level, setLevel] = useState<Level>("read");
  const [expires, setExpires] = useState("");
  const [ips, setIps] = useState("");
  const [paths, setPaths] = useState("");
  const [rate, setRate] = useState("");
  const [description, setDescription] = useState("");
  const { busy, error, run } = useAction();
  const submit = () => run(async () => {
    onCreated(await call(api.POST("/api/v1/auth/api-keys", { body: {
      name, access_level: level, description, allowed_ips: listOrNull(ips), allowed_endpoints: listOrNull(paths),
      // datetime-local is local time: sent with its zone, as the API requires
      expires_at: expires ? new Date(expires).toISOString() : null,
      rate_limit: rate ? { requests_per_minute: Number(rate) } : null } })));
  });
  return (
    <Modal title={t("newKey")} onClose={onClose} testid="key-form">
      <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <TextField label={c("name")} name="name" error={error} value={name} onValue={setName} required autoFocus />
        <SelectField label={t("accessLevel")} name="access_level" error={error} value={level}
                     onValue={(v) => setLevel(v as Level)}
                     options={(["read", "write", "full"] as const).map((l) => ({ value: l, label: t(l) }))} />
        <TextField label={t("expires")} name="expires_at" error={error} hint={t("expiresHint")} type="datetime-local"
                   value={expires} onValue={setExpires} />
        <TextField label={t("allowedIps")} name="allowed_ips" error={error} hint={t("allowedIpsHint")} value={ips}
                   onValue={setIps} />
        <TextField label={t("allowedEndpoints")} name="allowed_endpoints" error={error} hint={t("allowedEndpointsHint")}
                   value={paths} onValue={setPaths} />
        <TextField label={t("rate")} name="rate_limit.requests_per_minute" error={error} hint={t("rateHint")}
                   value={rate} onValue={setRate} inputMode="numeric" />
        <TextField label={t("description")} name="description" error={error} value={description}
                   onValue={setDescription} />
        <ErrorNotice error={error} />
        <FormButtons onCancel={onClose} submit={c("create")} busy={busy} />
      </form>
    </Modal>
  );
}
