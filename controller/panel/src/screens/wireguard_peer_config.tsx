// A peer's wg-quick config, as the API renders it: a QR code for the WireGuard app and a .conf download made
// from the same text (a Blob in the page: the config never goes through another request or a URL).
import { api, call } from "../api/client";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { Modal } from "../ui/modal";
import { QrCode } from "../ui/qr";
import { Value } from "../ui/values";
import type { Peer } from "./wireguard_status";
import { wgText } from "./wireguard_text";

/** The file name the API gave its download (Content-Disposition), else one like it: <name>.conf. */
function fileName(response: Response, name: string): string {
  const given = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1];
  return given ?? `${name.replace(/[^A-Za-z0-9_=+.-]+/g, "_").slice(0, 15) || "wg0"}.conf`;
}

function download(text: string, filename: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

export function PeerConfig({ peer, onClose }: { peer: Peer; onClose: () => void }) {
  const t = useText(wgText);
  const c = useText(common);
  const config = useLoad(async () => {
    const request = api.GET("/api/v1/wireguard/clients/{id}/config", { params: { path: { id: peer.id } }, parseAs: "text" });
    const text = await call(request);
    return { text, file: fileName((await request).response, peer.name) };
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
                onClick={() => config.data && download(config.data.text, config.data.file)}>
          {t("downloadConf")}
        </button>
        <button type="button" onClick={onClose}>{c("close")}</button>
      </div>
    </Modal>
  );
}
