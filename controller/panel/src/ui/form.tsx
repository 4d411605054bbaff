// Labelled form fields: every input has a <label>, and the API's message for that field is shown under it and
// tied to it with aria-describedby, so a screen reader reads it too.
import type { ComponentChildren, JSX } from "preact";
import { useId } from "preact/hooks";
import { common } from "../i18n/common";
import { useText } from "../i18n/text";
import { fieldError } from "./feedback";

interface FieldProps {
  label: string;
  /** the API's field name: its 422 message shows here */
  name: string;
  error?: unknown;
  hint?: string;
  children: (props: { id: string; name: string; "aria-describedby"?: string; "aria-invalid"?: boolean })
    => ComponentChildren;
}

export function Field({ label, name, error, hint, children }: FieldProps) {
  const id = useId();
  const message = fieldError(error, name);
  const described = [hint ? `${id}-hint` : "", message ? `${id}-error` : ""].filter(Boolean).join(" ");
  return (
    <div class={`field${message ? " invalid" : ""}`}>
      <label for={id}>{label}</label>
      {children({ id, name, "aria-describedby": described || undefined, "aria-invalid": message ? true : undefined })}
      {hint && <small id={`${id}-hint`} class="muted">{hint}</small>}
      {message && <small id={`${id}-error`} class="field-error" translate={false}>{message}</small>}
    </div>
  );
}

type InputProps = Omit<JSX.InputHTMLAttributes<HTMLInputElement>, "label" | "value" | "onInput" | "name"> & {
  label: string; name: string; error?: unknown; hint?: string;
  value: string; onValue: (value: string) => void;
};

export function TextField({ label, name, error, hint, value, onValue, ...rest }: InputProps) {
  return (
    <Field label={label} name={name} error={error} hint={hint}>
      {(p) => <input {...rest} {...p} value={value}
                     onInput={(e) => onValue((e.currentTarget as HTMLInputElement).value)} />}
    </Field>
  );
}

interface SelectProps {
  label: string; name: string; error?: unknown; value: string; onValue: (value: string) => void;
  options: { value: string; label: string }[];
}

export function SelectField({ label, name, error, value, onValue, options }: SelectProps) {
  return (
    <Field label={label} name={name} error={error}>
      {(p) => (
        <select {...p} value={value} onChange={(e) => onValue((e.currentTarget as HTMLSelectElement).value)}>
          {options.map((o) => <option key={o.value} value={o.value}>{o.label}</option>)}
        </select>
      )}
    </Field>
  );
}

/** A form's closing row: Cancel, then its primary submit button (held while the form's request runs). */
export function FormButtons({ onCancel, submit, busy }: { onCancel: () => void; submit: string; busy: boolean }) {
  const c = useText(common);
  return (
    <div class="buttons">
      <button type="button" onClick={onCancel}>{c("cancel")}</button>
      <button type="submit" class="primary" disabled={busy}>{submit}</button>
    </div>
  );
}
