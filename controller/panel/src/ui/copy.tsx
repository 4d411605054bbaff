// Copy a value to the clipboard. Where the clipboard is refused (no permission, an insecure context) the value's
// text is selected instead, so the operator can still copy it by hand.
import { useState } from "preact/hooks";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";

export function CopyButton({ text, target, label }: { text: string; target?: () => HTMLElement | null; label?: string }) {
  const t = useText(common);
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
    } catch {
      const el = target?.();
      if (el) getSelection()?.selectAllChildren(el);
    }
  };
  return (
    <button type="button" onClick={copy} aria-live="polite">
      {copied ? t("copied") : label ?? t("copy")}
    </button>
  );
}
