// The panel's shell: signed out, the sign-in screen; signed in, the navigation the account may use and the
// screen the hash names. Language and theme switches live here and apply to every screen at once.
import { useEffect, useMemo, useState } from "preact/hooks";
import { api, call } from "./api/client";
import { currentUser, end, onSessionChange, type SignedInUser } from "./api/session";
import { common } from "./i18n/common";
import { detectLocale, LocaleContext, LOCALES, saveLocale, tagOf, useLocale, type Locale } from "./i18n/locale";
import { useText } from "./i18n/text";
import { may, ownerScoped } from "./permissions";
import { SCREENS, type ScreenEntry } from "./routes";
import { href, navigate, useRoute } from "./router";
import { ChangePassword, SignIn } from "./screens/sign_in";

type Theme = "auto" | "light" | "dark";
const THEME_KEY = "vpnfleet.theme";

function applyTheme(theme: Theme): void {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  localStorage.setItem(THEME_KEY, theme);
}

export function allowed(entry: ScreenEntry, user: SignedInUser | null): boolean {
  if (!user) return false;
  if (ownerScoped(user) && !entry.owned) return false;
  return entry.permission ? may(user, entry.permission) : true;
}

export function App() {
  const [locale, setLocaleState] = useState<Locale>(detectLocale);
  const [user, setUser] = useState<SignedInUser | null>(currentUser);
  useEffect(() => onSessionChange(setUser), []);
  useEffect(() => { document.documentElement.lang = tagOf(locale); }, [locale]);
  useEffect(() => { applyTheme((localStorage.getItem(THEME_KEY) as Theme | null) ?? "auto"); }, []);
  const localeState = useMemo(() => ({ locale, setLocale: (l: Locale) => { saveLocale(l); setLocaleState(l); } }),
                              [locale]);
  return (
    <LocaleContext.Provider value={localeState}>
      {!user ? <SignIn /> : user.must_change_password ? <ChangePassword forced /> : <Shell user={user} />}
    </LocaleContext.Provider>
  );
}

function Shell({ user }: { user: SignedInUser }) {
  const t = useText(common);
  const route = useRoute();
  const screens = SCREENS.filter((s) => allowed(s, user));
  const home = screens.find((s) => s.nav)?.section ?? "settings";
  const entry = screens.find((s) => s.section === route.parts[0]);
  useEffect(() => { if (!route.parts[0]) navigate(`/${home}`); }, [route.parts[0], home]);
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => setMenuOpen(false), [route.path]);
  const signOut = async () => {
    try { await call(api.POST("/api/v1/auth/logout", { body: { all: false } })); } catch { /* ended anyway */ }
    end();
    location.hash = "";
  };
  return (
    <div class="shell">
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        {t("skip")}
      </a>
      <header class="topbar">
        <span class="brand" translate={false}>vpnfleet</span>
        <button type="button" class="menu-toggle" aria-expanded={menuOpen} aria-controls="nav"
                onClick={() => setMenuOpen(!menuOpen)}>{t("menu")}</button>
        <div class="topbar-tools">
          <LanguageSwitch />
          <ThemeSwitch />
          <span class="who" translate={false}>{user.username}</span>
          <button type="button" onClick={signOut}>{t("signOut")}</button>
        </div>
      </header>
      <nav id="nav" class={menuOpen ? "open" : undefined} aria-label={t("nav")}>
        <ul>
          {screens.filter((s) => s.nav).map((s) => (
            <li key={s.section}>
              <a href={href(`/${s.section}`)} aria-current={route.parts[0] === s.section ? "page" : undefined}>
                {t(s.nav!)}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        {entry ? entry.render(route) : route.parts[0] ? <p class="notice">{t("notAllowed")}</p> : null}
      </main>
    </div>
  );
}

export function LanguageSwitch() {
  const t = useText(common);
  const { locale, setLocale } = useLocale();
  return (
    <label class="switch">
      <span class="sr-only">{t("language")}</span>
      <select value={locale} onChange={(e) => setLocale((e.currentTarget as HTMLSelectElement).value as Locale)}
              data-testid="language">
        {LOCALES.map((l) => <option key={l.code} value={l.code} lang={l.tag} translate={false}>{l.name}</option>)}
      </select>
    </label>
  );
}

function ThemeSwitch() {
  const t = useText(common);
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem(THEME_KEY) as Theme | null) ?? "auto");
  return (
    <label class="switch">
      <span class="sr-only">{t("theme")}</span>
      <select value={theme} onChange={(e) => { const v = (e.currentTarget as HTMLSelectElement).value as Theme;
                                               setTheme(v); applyTheme(v); }}>
        <option value="auto">{t("themeAuto")}</option>
        <option value="light">{t("themeLight")}</option>
        <option value="dark">{t("themeDark")}</option>
      </select>
    </label>
  );
}
