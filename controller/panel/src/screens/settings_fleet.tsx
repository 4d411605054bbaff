// The fleet's agent settings (system.view reads them, system.edit saves) and the controller's version.
import { useEffect, useState } from "preact/hooks";
import { api, call } from "../api/client";
import type { components } from "../api/schema";
import { currentUser } from "../api/session";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { may } from "../permissions";
import { useAction } from "../ui/action";
import { ErrorNotice, Loading } from "../ui/feedback";
import { SelectField, TextField } from "../ui/form";
import { useLoad } from "../ui/load";
import { Value } from "../ui/values";
import { settingsText } from "./settings_text";

type Body = components["schemas"]["AgentSettingsBody"];
type Level = NonNullable<Body["log_level"]>;
const LEVELS: Level[] = ["debug", "info", "warning", "error"];

export function FleetSettings() {
  const t = useText(settingsText);
  const c = useText(common);
  const editor = may(currentUser(), "system.edit");
  const current = useLoad(() => call(api.GET("/api/v1/fleet/agent-settings")), []);
  const [interval, setInterval_] = useState("");
  const [level, setLevel] = useState("");
  const { busy, error, run } = useAction();
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    if (!current.data) return;
    setInterval_(current.data.metrics_interval_seconds?.toString() ?? "");
    setLevel(current.data.log_level ?? "");
  }, [current.data]);
  const save = () => {
    setSaved(false);
    return run(async () => {
      // omitted: unchanged (the API takes no null here)
      const body: Body = {};
      if (interval.trim()) body.metrics_interval_seconds = Number(interval);
      const chosen = LEVELS.find((l) => l === level);
      if (chosen) body.log_level = chosen;
      const answer = await call(api.PUT("/api/v1/fleet/agent-settings", { body }));
      current.setData(() => answer);
      setSaved(true);
    });
  };
  return (
    <section class="card" aria-labelledby="fleet-settings" data-testid="fleet-settings">
      <h2 id="fleet-settings">{t("fleet")}</h2>
      <p class="muted">{t("fleetHelp")}</p>
      <ErrorNotice error={current.error} />
      {!current.data ? (current.loading && <Loading />) : (
        <form onSubmit={(e) => { e.preventDefault(); void save(); }}>
          <TextField label={t("metrics")} name="metrics_interval_seconds" error={error} value={interval}
                     onValue={setInterval_} inputMode="numeric" disabled={!editor} placeholder={t("notSet")} />
          <SelectField label={t("logLevel")} name="log_level" error={error} value={level} onValue={setLevel}
                       options={[{ value: "", label: t("notSet") }, ...LEVELS.map((l) => ({ value: l, label: t(l) }))]} />
          <ErrorNotice error={error} />
          {saved && <p role="status">{t("saved")}</p>}
          {editor && <div class="buttons"><button type="submit" class="primary" disabled={busy}>{c("save")}</button></div>}
        </form>
      )}
    </section>
  );
}

export function VersionCard() {
  const t = useText(settingsText);
  const version = useLoad(() => call(api.GET("/api/v1/version")), []);
  return (
    <section class="card" aria-labelledby="version" data-testid="version">
      <h2 id="version">{t("version")}</h2>
      <ErrorNotice error={version.error} />
      {!version.data ? (version.loading && <Loading />) : (
        <dl class="facts">
          <dt>{t("controllerVersion")}</dt><dd><Value mono>{version.data.version}</Value></dd>
          <dt>{t("apiVersion")}</dt><dd><Value mono>{version.data.api_version}</Value></dd>
          <dt>{t("features")}</dt><dd><Value mono>{version.data.features.join(", ") || "—"}</Value></dd>
        </dl>
      )}
    </section>
  );
}
