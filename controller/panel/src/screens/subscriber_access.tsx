// How a subscriber gets connected, as their page at /sub/<short_uuid> shows it: the subscription URL (copy),
// its QR code, one QR code per format, one-tap import links and short per-platform steps. The URLs and links
// come from the API (GET /clients/{id}/import, built by controller/subscription_page.py), never built here.
import { useRef } from "preact/hooks";
import { api, call } from "../api/client";
import { common } from "../i18n/common";
import { defineText, useText } from "../i18n/text";
import { CopyButton } from "../ui/copy";
import { ErrorNotice, Loading } from "../ui/feedback";
import { useLoad } from "../ui/load";
import { QrCode } from "../ui/qr";
import { Value } from "../ui/values";
import "./subscriber.css";

const text = defineText({
  en: {
    url: "Subscription URL", urlHint: "Add this URL as a subscription in the app; it is the subscriber's key.",
    qr: "QR code of the subscription URL", formats: "A QR code per format", qrOf: "QR code: {format}",
    import: "Import with one tap", how: "How to connect",
    unavailable: "No running server serves this subscription right now; the apps connect once one is back.",
    android: "Android", ios: "iPhone and iPad", windows: "Windows", macos: "macOS",
    tap: "install one of these apps, then tap its button above:",
    add: "add the subscription URL above in one of these apps:",
  },
  zh: {
    url: "订阅链接", urlHint: "在应用中添加此链接作为订阅；它就是该用户的密钥。",
    qr: "订阅链接二维码", formats: "各格式的二维码", qrOf: "二维码：{format}",
    import: "一键导入", how: "连接方法",
    unavailable: "当前没有运行中的服务器提供此订阅；服务器恢复后应用会自动连接。",
    android: "安卓", ios: "iOS", windows: "Windows", macos: "macOS",
    tap: "安装以下任一应用，然后点击上方对应按钮：",
    add: "在以下任一应用中添加上方的订阅链接：",
  },
  ru: {
    url: "Ссылка подписки", urlHint: "Добавьте эту ссылку как подписку в приложении; это ключ подписчика.",
    qr: "QR-код ссылки подписки", formats: "QR-код для каждого формата", qrOf: "QR-код: {format}",
    import: "Импорт в одно касание", how: "Как подключиться",
    unavailable: "Сейчас ни один сервер не обслуживает эту подписку; приложения подключатся, когда он вернётся.",
    android: "Android", ios: "iOS", windows: "Windows", macos: "macOS",
    tap: "установите одно из этих приложений и нажмите его кнопку выше:",
    add: "добавьте ссылку подписки выше в одно из этих приложений:",
  },
});

// per platform: what to do, in which apps (product names: data, never translated)
const PLATFORMS = [
  { key: "android", step: "tap", apps: "v2rayNG, Hiddify, sing-box" },
  { key: "ios", step: "tap", apps: "Shadowrocket, Streisand, sing-box" },
  { key: "windows", step: "add", apps: "v2rayN, Hiddify, Clash Verge" },
  { key: "macos", step: "add", apps: "sing-box, Hiddify, Clash Verge" },
] as const;

interface AccessProps {
  /** the subscriber's id */
  id: string;
  /** changes when the URL does (after a rotation), so the links are loaded again */
  url: string;
  /** show a QR code per format and the per-platform steps (the subscriber's own view) */
  full?: boolean;
}

export function SubscriptionAccess({ id, url, full }: AccessProps) {
  const t = useText(text);
  const tc = useText(common);
  const input = useRef<HTMLInputElement>(null);
  const links = useLoad(() => call(api.GET("/api/v1/clients/{id}/import", { params: { path: { id } } })), [id, url]);
  const data = links.data;
  return (
    <div class="sub-access">
      <div class="field">
        <label for={`url-${id}`}>{t("url")}</label>
        <div class="sub-url">
          <input ref={input} id={`url-${id}`} readOnly value={url} translate={false} data-testid="subscription-url"
                 onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
          <CopyButton text={url} label={tc("copy")} target={() => input.current} />
        </div>
        <small class="muted">{t("urlHint")}</small>
      </div>
      <div data-testid="subscription-qr" class="sub-main-qr">
        <QrCode text={url} label={t("qr")} />
      </div>
      {links.error ? <ErrorNotice error={links.error} /> : !data ? <Loading /> : (
        <>
          {!data.available && <p class="notice" data-testid="unavailable">{t("unavailable")}</p>}
          <h3>{t("import")}</h3>
          <ul class="sub-apps">
            {data.import_links.map((l) => (
              <li key={l.app}><a href={l.url} data-app={l.app} translate={false}>{l.app}</a></li>
            ))}
          </ul>
          {full && (
            <>
              <h3>{t("formats")}</h3>
              <ul class="sub-qrs">
                {data.formats.map((f) => (
                  <li key={f.name}>
                    <figure data-format={f.name}>
                      <QrCode text={f.url} label={t("qrOf", { format: f.name })} size={180} />
                      <figcaption translate={false}>{f.name}</figcaption>
                    </figure>
                  </li>
                ))}
              </ul>
              <h3>{t("how")}</h3>
              <ul class="sub-steps">
                {PLATFORMS.map((p) => (
                  <li key={p.key}><strong>{t(p.key)}</strong>: {t(p.step)} <Value>{p.apps}</Value></li>
                ))}
              </ul>
            </>
          )}
        </>
      )}
    </div>
  );
}
