// Placeholder: this screen is being built.
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { Loading } from "../ui/feedback";
import { Screen } from "../ui/screen";


export function NodeDetail({ id: _id }: { id: string }) {
  const t = useText(common);
  return <Screen title={t("nodes")}><Loading /></Screen>;
}
