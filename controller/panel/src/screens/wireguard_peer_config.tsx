// A peer's wg-quick config, as the API renders it: a QR code for the WireGuard app and a .conf download made
// from the same text (a Blob in the page: the config never goes through another request or a URL).
import { api, call } from "../api/client";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { confFileName, saveText } from "../ui/download";
import { ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Modal } from "../ui/modal";
import { QrCode } from "../ui/qr";
import { Value } from "../ui/values";
import type { Peer } from "./wireguard_status";
import { wgText } from "./wireguard_text";

export function PeerConfig({ peer, onClose }: { peer: Peer; onClose: () => void }) {
  const t = useText(wgText);
  const c = useText(common);
  const config = useLoad(async () => {
    const request = api.GET("/api/v1/wireguard/clients/{id}/config", { params: { path: { id: peer.id } }, parseAs: "text" });
    const text = await call(request);
    return { text, file: confFileName(peer.name, (await request).response) };
  }, [peer.id]);
  return (
    <Modal title={t("configTitle")} onClose={onClose} wide testid="wg-peer-config">
      <p class="modal-subject"><Value>{peer.name}</Value></p>
      <ErrorNotice error={config.error} />
      {config.data === undefined ? (config.loading && <Loading />) : (
        <div class="wg-config">
          <QrCode text={config.data.text} label={t("qrLabel", { name: peer.name })} size={260} />
          <div>
            <p>{t("configHelp")}</p>
            <pre class="wg-conf" translate={false} data-testid="wg-conf-text">{config.data.text}</pre>
          </div>
        </div>
      )}
      <div class="buttons">
        <button type="button" class="primary" disabled={config.data === undefined}
                onClick={() => config.data && saveText(config.data.text, config.data.file)}>
          {t("downloadConf")}
        </button>
        <button type="button" onClick={onClose}>{c("close")}</button>
      </div>
    </Modal>
  );
}
