// A new peer on a server: its addresses are the next free ones (or the one given), its keys generated.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { FormButtons, TextField } from "../ui/form";
import { Modal } from "../ui/modal";
import type { Peer } from "./wireguard_status";
import { wgText } from "./wireguard_text";

export function PeerForm({ serverId, onClose, onCreated }: {
  serverId: number; onClose: () => void; onCreated: (peer: Peer) => void;
}) {
  const t = useText(wgText);
  const c = useText(common);
  const [name, setName] = useState("");
  const [ipv4, setIpv4] = useState("");
  const [expires, setExpires] = useState("");
  const { busy, error, run } = useAction();
  const submit = () => run(async () => {
    const made = await call(api.POST("/api/v1/wireguard/clients", { body: {
      server_id: serverId, name, ipv4_address: ipv4 || null, auto_assign_ip: !ipv4, use_preshared_key: true,
      description: "",
      // datetime-local is the browser's local time: sent with its zone, as the API requires
      expires_at: expires ? new Date(expires).toISOString() : null } }));
    onCreated(made);
  });
  return (
    <Modal title={t("newPeer")} onClose={onClose} testid="wg-peer-form">
      <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <TextField label={c("name")} name="name" error={error} value={name} onValue={setName} required autoFocus />
        <TextField label={t("peerAddress")} name="ipv4_address" error={error} hint={t("peerAddressHint")}
                   value={ipv4} onValue={setIpv4} />
        <TextField label={t("expires")} name="expires_at" error={error} type="datetime-local" value={expires}
                   onValue={setExpires} />
        <ErrorNotice error={error} />
        <FormButtons onCancel={onClose} submit={c("create")} busy={busy} />
      </form>
    </Modal>
  );
}
