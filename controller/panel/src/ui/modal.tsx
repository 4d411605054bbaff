// A modal <dialog> that a screen opens by rendering it (a form, or a secret shown once): focus moves into it,
// Escape and the close button end it, and whatever it held is gone when it closes.
import type { ComponentChildren } from "preact";
import { useEffect, useId, useRef } from "preact/hooks";
import "./modal.css";

interface ModalProps {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  /** a wider dialog, for a QR code beside its text */
  wide?: boolean;
  testid?: string;
}

export function Modal({ title, onClose, children, wide, testid }: ModalProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const heading = useId();
  useEffect(() => {
    const el = dialog.current;
    if (el && !el.open) el.showModal();
    return () => el?.close();
  }, []);
  return (
    <dialog ref={dialog} aria-labelledby={heading} class={wide ? "modal wide" : "modal"} data-testid={testid}
            onClose={onClose}>
      <h2 id={heading}>{title}</h2>
      {children}
    </dialog>
  );
}
