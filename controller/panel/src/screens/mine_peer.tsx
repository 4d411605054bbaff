// One WireGuard peer on "mine": its state, its config as a QR code (the WireGuard apps scan it) and the .conf
// download (GET /wireguard/clients/{id}/config, fetched with the session's token and saved from memory).
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { confFileName, saveText } from "../ui/download";
import { ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { QrCode } from "../ui/qr";
import { Badge } from "../ui/screen";
import { Ago, Bytes, Value, When } from "../ui/values";

export const peerText = defineText({
  en: { active: "Active", disabled: "Disabled", addresses: "Addresses", handshake: "Last handshake",
        received: "Received", sent: "Sent", expires: "Valid until", noExpiry: "No end date",
        qr: "QR code of the WireGuard configuration", scan: "Scan with the WireGuard app, or download the file.",
        download: "Download .conf" },
  zh: { active: "正常", disabled: "已停用", addresses: "地址", handshake: "最近握手",
        received: "已接收", sent: "已发送", expires: "有效期至", noExpiry: "无截止日期",
        qr: "WireGuard 配置二维码", scan: "用 WireGuard 应用扫码，或下载配置文件。",
        download: "下载 .conf 文件" },
  ru: { active: "Активен", disabled: "Отключён", addresses: "Адреса", handshake: "Последнее рукопожатие",
        received: "Получено", sent: "Отправлено", expires: "Действует до", noExpiry: "Бессрочно",
        qr: "QR-код конфигурации WireGuard", scan: "Отсканируйте в приложении WireGuard или скачайте файл.",
        download: "Скачать .conf" },
});

type Peer = components["schemas"]["ClientOut"];

export function PeerCard({ peer }: { peer: Peer }) {
  const t = useText(peerText);
  const tc = useText(common);
  const path = { params: { path: { id: peer.id } } };
  const full = useLoad(() => call(api.GET("/api/v1/wireguard/clients/{id}", path)), [peer.id]);
  const [error, setError] = useState<unknown>(null);
  const download = async () => {
    setError(null);
    try {
      const request = api.GET("/api/v1/wireguard/clients/{id}/config", { ...path, parseAs: "text" });
      saveText(await call(request), confFileName(peer.name, (await request).response));
    } catch (e) {
      setError(e);
    }
  };
  const addresses = [peer.ipv4_address, peer.ipv6_address].filter(Boolean).join(", ");
  return (
    <article class="card mine-card" data-peer={peer.name} aria-labelledby={`peer-${peer.id}`}>
      <h3 id={`peer-${peer.id}`}>
        <Value>{peer.name}</Value>
        <Badge tone={peer.status === "active" ? "ok" : "idle"}>{t(peer.status === "active" ? "active" : "disabled")}</Badge>
      </h3>
      <div class="grid2">
        <dl class="facts">
          <dt>{t("addresses")}</dt><dd><Value mono>{addresses}</Value></dd>
          <dt>{t("handshake")}</dt><dd>{peer.last_handshake ? <Ago iso={peer.last_handshake} /> : tc("never")}</dd>
          <dt>{t("received")}</dt><dd><Bytes n={peer.bytes_received} /></dd>
          <dt>{t("sent")}</dt><dd><Bytes n={peer.bytes_sent} /></dd>
          <dt>{t("expires")}</dt><dd>{peer.expires_at ? <When iso={peer.expires_at} /> : t("noExpiry")}</dd>
        </dl>
        <div>
          {full.error ? <ErrorNotice error={full.error} /> : !full.data ? <Loading /> : (
            <div data-testid="peer-qr"><QrCode text={full.data.config} label={t("qr")} /></div>
          )}
          <p class="muted">{t("scan")}</p>
          <button type="button" onClick={download} data-testid="peer-download">{t("download")}</button>
          <ErrorNotice error={error} />
        </div>
      </div>
    </article>
  );
}
