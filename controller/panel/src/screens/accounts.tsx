// Placeholder: this screen is being built.
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { Loading } from "../ui/feedback";
import { Screen } from "../ui/screen";
import type { Route } from "../router";

export function Accounts({ route: _route }: { route: Route }) {
  const t = useText(common);
  return <Screen title={t("accounts")}><Loading /></Screen>;
}
