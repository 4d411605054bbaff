// Signing in: a password, then (when the account has 2FA) a TOTP code or a recovery code; an account whose
// role must use 2FA enrols here first; one whose password an admin reset chooses a new one before anything else.
import { useState } from "preact/hooks";
import { api, call } from "../api/client";
import { begin, end, type Tokens } from "../api/session";
import { LanguageSwitch } from "../app";
import { defineText, useText } from "../i18n/text";
import { useAction } from "../ui/action";
import { ErrorNotice } from "../ui/feedback";
import { TextField } from "../ui/form";
import { QrCode } from "../ui/qr";

const text = defineText({
  en: {
    title: "Sign in to vpnfleet", username: "Username", password: "Password", remember: "Keep me signed in",
    signIn: "Sign in", codeTitle: "Two-factor authentication", totp: "Code from your authenticator app",
    recovery: "Recovery code", useRecovery: "Use a recovery code instead", useTotp: "Use an authenticator code",
    verify: "Verify", setupTitle: "Set up two-factor authentication",
    setupHelp: "Your role must use two-factor authentication. Scan this code with an authenticator app, or type the key, then enter the code it shows.",
    secret: "Key", qr: "QR code for your authenticator app", enable: "Turn on and sign in",
    codesTitle: "Your recovery codes", codesHelp: "Each code works once, if you lose your authenticator. Keep them somewhere safe: they are shown only now.",
    continue: "Continue", changeTitle: "Choose a new password",
    forcedHelp: "An administrator reset your password. Choose your own before you go on.",
    current: "Current password", newPassword: "New password", change: "Change password", startOver: "Start over",
  },
  zh: {
    title: "登录 vpnfleet", username: "用户名", password: "密码", remember: "保持登录",
    signIn: "登录", codeTitle: "两步验证", totp: "身份验证器应用中的验证码",
    recovery: "恢复码", useRecovery: "改用恢复码", useTotp: "改用身份验证器验证码",
    verify: "验证", setupTitle: "设置两步验证",
    setupHelp: "您的角色必须使用两步验证。请用身份验证器应用扫描此二维码或输入密钥，然后输入其显示的验证码。",
    secret: "密钥", qr: "身份验证器应用的二维码", enable: "开启并登录",
    codesTitle: "您的恢复码", codesHelp: "丢失身份验证器时，每个恢复码可使用一次。请妥善保存：它们只显示这一次。",
    continue: "继续", changeTitle: "设置新密码",
    forcedHelp: "管理员重置了您的密码。请先设置您自己的密码。",
    current: "当前密码", newPassword: "新密码", change: "修改密码", startOver: "重新开始",
  },
  ru: {
    title: "Вход в vpnfleet", username: "Имя пользователя", password: "Пароль", remember: "Не выходить",
    signIn: "Войти", codeTitle: "Двухфакторная аутентификация", totp: "Код из приложения-аутентификатора",
    recovery: "Код восстановления", useRecovery: "Ввести код восстановления", useTotp: "Ввести код аутентификатора",
    verify: "Проверить", setupTitle: "Настройка двухфакторной аутентификации",
    setupHelp: "Для вашей роли обязательна двухфакторная аутентификация. Отсканируйте код приложением-аутентификатором или введите ключ, затем введите показанный код.",
    secret: "Ключ", qr: "QR-код для приложения-аутентификатора", enable: "Включить и войти",
    codesTitle: "Ваши коды восстановления", codesHelp: "Каждый код действует один раз, если вы потеряете аутентификатор. Сохраните их: они показываются только сейчас.",
    continue: "Продолжить", changeTitle: "Новый пароль",
    forcedHelp: "Администратор сбросил ваш пароль. Задайте свой, прежде чем продолжить.",
    current: "Текущий пароль", newPassword: "Новый пароль", change: "Сменить пароль", startOver: "Начать заново",
  },
});

type Step =
  | { kind: "password" }
  | { kind: "code"; mfaToken: string; method: "totp" | "recovery" }
  | { kind: "setup"; setupToken: string; secret: string; uri: string }
  | { kind: "codes"; codes: string[]; tokens: Tokens };

export function SignIn() {
  const t = useText(text);
  const [step, setStep] = useState<Step>({ kind: "password" });
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [remember, setRemember] = useState(false);
  const [code, setCode] = useState("");
  const { busy, error, setError, run } = useAction();

  const signIn = () => run(async () => {
    const answer = await call(api.POST("/api/v1/auth/login", { body: { username, password, remember_me: remember } }));
    if ("two_factor_required" in answer) {
      setStep({ kind: "code", mfaToken: answer.mfa_token, method: "totp" });
    } else if ("two_factor_setup_required" in answer) {
      const setup = await call(api.POST("/api/v1/auth/2fa/setup", {
        headers: { Authorization: `Bearer ${answer.setup_token}` } }));
      setStep({ kind: "setup", setupToken: answer.setup_token, secret: setup.secret, uri: setup.otpauth_uri });
    } else {
      begin(answer, remember);
    }
    setPassword("");
  });

  const verify = (s: Extract<Step, { kind: "code" }>) => run(async () => {
    const tokens = await call(api.POST("/api/v1/auth/verify-2fa", {
      body: { code: code.trim(), method: s.method, mfa_token: s.mfaToken } }));
    begin(tokens, remember);
  });

  const enable = (s: Extract<Step, { kind: "setup" }>) => run(async () => {
    const answer = await call(api.POST("/api/v1/auth/2fa/enable", {
      body: { code: code.trim() }, headers: { Authorization: `Bearer ${s.setupToken}` } }));
    if (!answer.access_token || !answer.refresh_token || !answer.user) throw new Error("no session in the answer");
    setStep({ kind: "codes", codes: answer.recovery_codes, tokens: {
      access_token: answer.access_token, token_type: "bearer", expires_in: answer.expires_in ?? 0,
      refresh_token: answer.refresh_token, refresh_expires_in: answer.refresh_expires_in ?? 0, user: answer.user } });
  });

  const startOver = () => { setStep({ kind: "password" }); setCode(""); setError(null); };

  return (
    <main class="sign-in" id="main">
      <div class="sign-in-tools"><LanguageSwitch /></div>
      <div class="card">
        {step.kind === "password" && (
          <form onSubmit={(e) => { e.preventDefault(); void signIn(); }}>
            <h1>{t("title")}</h1>
            <TextField label={t("username")} name="username" error={error} value={username} onValue={setUsername}
                       autocomplete="username" required autoFocus />
            <TextField label={t("password")} name="password" error={error} value={password} onValue={setPassword}
                       type="password" autocomplete="current-password" required />
            <label class="check">
              <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.currentTarget.checked)} />
              {t("remember")}
            </label>
            <ErrorNotice error={error} />
            <button class="primary" type="submit" disabled={busy}>{t("signIn")}</button>
          </form>
        )}
        {step.kind === "code" && (
          <form onSubmit={(e) => { e.preventDefault(); void verify(step); }}>
            <h1>{t("codeTitle")}</h1>
            <TextField label={step.method === "totp" ? t("totp") : t("recovery")} name="code" error={error}
                       value={code} onValue={setCode} autocomplete="one-time-code" required autoFocus
                       inputMode={step.method === "totp" ? "numeric" : "text"} />
            <ErrorNotice error={error} />
            <button class="primary" type="submit" disabled={busy}>{t("verify")}</button>
            <button type="button" class="link" onClick={() => {
              setCode(""); setStep({ ...step, method: step.method === "totp" ? "recovery" : "totp" }); }}>
              {step.method === "totp" ? t("useRecovery") : t("useTotp")}
            </button>
            <button type="button" class="link" onClick={startOver}>{t("startOver")}</button>
          </form>
        )}
        {step.kind === "setup" && (
          <form onSubmit={(e) => { e.preventDefault(); void enable(step); }}>
            <h1>{t("setupTitle")}</h1>
            <p>{t("setupHelp")}</p>
            <QrCode text={step.uri} label={t("qr")} size={200} />
            <p>{t("secret")}: <code translate={false} data-testid="totp-secret">{step.secret}</code></p>
            <TextField label={t("totp")} name="code" error={error} value={code} onValue={setCode}
                       autocomplete="one-time-code" inputMode="numeric" required />
            <ErrorNotice error={error} />
            <button class="primary" type="submit" disabled={busy}>{t("enable")}</button>
          </form>
        )}
        {step.kind === "codes" && (
          <div>
            <h1>{t("codesTitle")}</h1>
            <p>{t("codesHelp")}</p>
            <ul class="codes" translate={false}>{step.codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul>
            <button class="primary" type="button" onClick={() => begin(step.tokens, remember)}>{t("continue")}</button>
          </div>
        )}
      </div>
    </main>
  );
}

/** A new password, asked for in place of every screen when the account must change it (forced) and in settings. */
export function ChangePassword({ forced }: { forced?: boolean }) {
  const t = useText(text);
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const { busy, error, run } = useAction();
  const [done, setDone] = useState(false);
  const submit = () => run(async () => {
    await call(api.PUT("/api/v1/auth/password", { body: { current_password: current, new_password: next } }));
    setCurrent(""); setNext(""); setDone(true);
    if (forced) end(); // the forced session may do nothing else: sign in again with the new password
  });
  const form = (
    <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
      <h2>{t("changeTitle")}</h2>
      {forced && <p>{t("forcedHelp")}</p>}
      <TextField label={t("current")} name="current_password" error={error} value={current} onValue={setCurrent}
                 type="password" autocomplete="current-password" required />
      <TextField label={t("newPassword")} name="new_password" error={error} value={next} onValue={setNext}
                 type="password" autocomplete="new-password" required />
      <ErrorNotice error={error} />
      {done && <p role="status">✓</p>}
      <button class="primary" type="submit" disabled={busy}>{t("change")}</button>
    </form>
  );
  return forced ? <main class="sign-in" id="main"><div class="card">{form}</div></main> : form;
}
