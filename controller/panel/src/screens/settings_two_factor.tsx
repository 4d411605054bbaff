// The account's own 2FA: turning it on (a QR code of the otpauth URI, then a code; the recovery codes are shown
// once), off (password and a code), and new recovery codes.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { CopyButton } from "../ui/copy";
import { ErrorNotice, Loading } from "../ui/feedback";
import { TextField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Modal } from "../ui/modal";
import { QrCode } from "../ui/qr";
import { Badge } from "../ui/screen";
import { settingsText } from "./settings_text";

type Step = { kind: "idle" } | { kind: "setup"; secret: string; uri: string } | { kind: "off" } | { kind: "newCodes" };

export function TwoFactor() {
  const t = useText(settingsText);
  const c = useText(common);
  const me = useLoad(() => call(api.GET("/api/v1/auth/me")), []);
  const [step, setStep] = useState<Step>({ kind: "idle" });
  const [codes, setCodes] = useState<string[] | null>(null);
  const [code, setCode] = useState("");
  const [password, setPassword] = useState("");
  const form = useAction();
  const to = (next: Step) => { setStep(next); setCode(""); setPassword(""); form.setError(null); };

  const start = () => form.run(async () => {
    const setup = await call(api.POST("/api/v1/auth/2fa/setup"));
    to({ kind: "setup", secret: setup.secret, uri: setup.otpauth_uri });
  });
  const enable = () => form.run(async () => {
    const answer = await call(api.POST("/api/v1/auth/2fa/enable", { body: { code: code.trim() } }));
    setCodes(answer.recovery_codes);
    to({ kind: "idle" });
    await me.reload();
  });
  const disable = () => form.run(async () => {
    await call(api.POST("/api/v1/auth/2fa/disable", { body: { password, code: code.trim() } }));
    to({ kind: "idle" });
    await me.reload();
  });
  const renew = () => form.run(async () => {
    const answer = await call(api.POST("/api/v1/auth/2fa/recovery-codes", { body: { code: code.trim() } }));
    setCodes(answer.recovery_codes);
    to({ kind: "idle" });
  });

  const on = me.data?.two_factor_enabled ?? false;
  return (
    <section class="card" aria-labelledby="two-factor" data-testid="two-factor">
      <h2 id="two-factor">{t("twoFactor")}{" "}
        {me.data && <Badge tone={on ? "ok" : "idle"}>{on ? t("on") : t("off")}</Badge>}</h2>
      <ErrorNotice error={me.error} />
      {!me.data ? (me.loading && <Loading />) : step.kind === "setup" ? (
        <form onSubmit={(e) => { e.preventDefault(); void enable(); }}>
          <p>{t("setupHelp")}</p>
          <QrCode text={step.uri} label={t("qr")} size={200} />
          <p>{t("secret")}: <code translate={false} data-testid="totp-secret">{step.secret}</code></p>
          <TextField label={t("code")} name="code" error={form.error} value={code} onValue={setCode}
                     autocomplete="one-time-code" inputMode="numeric" required />
          <ErrorNotice error={form.error} />
          <div class="buttons">
            <button type="button" onClick={() => to({ kind: "idle" })}>{t("cancelSetup")}</button>
            <button type="submit" class="primary" disabled={form.busy}>{t("enable")}</button>
          </div>
        </form>
      ) : step.kind === "off" || step.kind === "newCodes" ? (
        <form onSubmit={(e) => { e.preventDefault(); void (step.kind === "off" ? disable() : renew()); }}>
          <p>{step.kind === "off" ? t("offHelp") : t("newCodesHelp")}</p>
          {step.kind === "off" && (
            <TextField label={t("password")} name="password" error={form.error} value={password} onValue={setPassword}
                       type="password" autocomplete="current-password" required />
          )}
          <TextField label={step.kind === "off" ? t("codeOrRecovery") : t("code")} name="code" error={form.error}
                     value={code} onValue={setCode} autocomplete="one-time-code" required />
          <ErrorNotice error={form.error} />
          <div class="buttons">
            <button type="button" onClick={() => to({ kind: "idle" })}>{c("cancel")}</button>
            <button type="submit" class={step.kind === "off" ? "danger" : "primary"} disabled={form.busy}>
              {step.kind === "off" ? t("turnOff") : t("makeCodes")}
            </button>
          </div>
        </form>
      ) : (
        <>
          <p class="muted">{on ? t("onNote") : t("offNote")}</p>
          <ErrorNotice error={form.error} />
          <div class="buttons settings-start">
            {on ? <>
              <button type="button" onClick={() => to({ kind: "newCodes" })}>{t("newCodes")}</button>
              <button type="button" class="danger" onClick={() => to({ kind: "off" })}>{t("turnOff")}</button>
            </> : <button type="button" class="primary" disabled={form.busy} onClick={() => void start()}>{t("turnOn")}</button>}
          </div>
        </>
      )}
      {codes && <RecoveryCodes codes={codes} onClose={() => setCodes(null)} />}
    </section>
  );
}

function RecoveryCodes({ codes, onClose }: { codes: string[]; onClose: () => void }) {
  const t = useText(settingsText);
  return (
    <Modal title={t("codesTitle")} onClose={onClose} testid="recovery-codes">
      <div class="notice warn" role="alert"><p>{t("codesHelp")}</p></div>
      <ul class="codes" translate={false} data-testid="recovery-code-list">
        {codes.map((c) => <li key={c}><code>{c}</code></li>)}
      </ul>
      <div class="buttons">
        <CopyButton text={codes.join("\n")} />
        <button type="button" class="primary" onClick={onClose}>{t("codesDone")}</button>
      </div>
    </Modal>
  );
}
