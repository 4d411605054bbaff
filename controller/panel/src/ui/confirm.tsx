// Every destructive action asks first, in a modal <dialog> (focus moves into it, Escape cancels). The action
// runs from the dialog, so its error is shown there, beside the question, and nothing is left half done.
import type { ComponentChildren } from "preact";
import { useRef } from "preact/hooks";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { useAction } from "./action";
import { ErrorNotice } from "./feedback";

interface ConfirmProps {
  /** the button that opens the question */
  label: string;
  /** the question, e.g. "Delete node tokyo-1?" */
  title: string;
  children?: ComponentChildren;
  confirmLabel?: string;
  danger?: boolean;
  disabled?: boolean;
  onConfirm: () => Promise<unknown>;
}

export function ConfirmButton({ label, title, children, confirmLabel, danger, disabled, onConfirm }: ConfirmProps) {
  const t = useText(common);
  const dialog = useRef<HTMLDialogElement>(null);
  const { busy, error, setError, run: start } = useAction();
  const open = () => { setError(null); dialog.current?.showModal(); };
  const run = () => start(async () => {
    await onConfirm();
    dialog.current?.close();
  });
  return (
    <>
      <button type="button" class={danger ? "danger" : undefined} disabled={disabled} onClick={open}>{label}</button>
      <dialog ref={dialog} aria-labelledby={undefined} class="confirm">
        <h2>{title}</h2>
        {children ?? (danger && <p>{t("cannotUndo")}</p>)}
        <ErrorNotice error={error} />
        <div class="buttons">
          <button type="button" onClick={() => dialog.current?.close()}>{t("cancel")}</button>
          <button type="button" class={danger ? "danger" : "primary"} disabled={busy} onClick={run}>
            {confirmLabel ?? t("confirm")}
          </button>
        </div>
      </dialog>
    </>
  );
}
