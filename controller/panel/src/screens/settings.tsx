// Settings: every signed-in account's own security (password, 2FA, recovery codes); with system.view also the
// fleet's agent settings and the controller's version.
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { may } from "../permissions";
import { Screen } from "../ui/screen";
import { Value } from "../ui/values";
import { ChangePassword } from "./sign_in";
import { FleetSettings, VersionCard } from "./settings_fleet";
import { settingsText } from "./settings_text";
import { TwoFactor } from "./settings_two_factor";
import "./settings.css";

export function Settings() {
  const t = useText(settingsText);
  const c = useText(common);
  const user = currentUser();
  return (
    <Screen title={c("settings")}>
      <div class="grid2 settings">
        <section class="card" aria-labelledby="security">
          <h2 id="security">{t("security")}</h2>
          <dl class="facts">
            <dt>{t("account")}</dt><dd><Value>{user?.username}</Value></dd>
          </dl>
          <ChangePassword />
        </section>
        <TwoFactor />
        {may(user, "system.view") && <FleetSettings />}
        {may(user, "system.view") && <VersionCard />}
      </div>
    </Screen>
  );
}
