// A key just made (or rotated), shown this once: the API never answers it again, so closing the dialog drops
// it from the page for good (the caller keeps it only in this component's props).
import { useRef } from "preact/hooks";
import { useText } from "../i18n/text";
import { CopyButton } from "../ui/copy";
import { Modal } from "../ui/modal";
import { keyText } from "./api_key_text";

export function KeyReveal({ apiKey, onClose }: { apiKey: string; onClose: () => void }) {
  const t = useText(keyText);
  const box = useRef<HTMLElement>(null);
  return (
    <Modal title={t("shownTitle")} onClose={onClose} testid="key-reveal">
      <div class="notice warn" role="alert"><p>{t("shownWarning")}</p></div>
      <p class="key-label">{t("keyLabel")}</p>
      <code ref={box} class="key-secret" translate={false} data-testid="new-key">{apiKey}</code>
      <div class="buttons">
        <CopyButton text={apiKey} target={() => box.current} />
        <button type="button" class="primary" onClick={onClose}>{t("done")}</button>
      </div>
    </Modal>
  );
}
