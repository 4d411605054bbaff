// One request a form or a button sends: busy while it runs, and the API's error kept for the form to show.
// One place for how every form shows progress and errors, so they all behave alike.
import { useState } from "preact/hooks";

export interface Action {
  busy: boolean;
  error: unknown;
  /** clear (null) or replace the error shown, e.g. when the form is opened again */
  setError: (error: unknown) => void;
  /** busy and the error cleared while `work` runs; its error kept. Resolves true when it succeeded. */
  run: (work: () => Promise<unknown>) => Promise<boolean>;
}

export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async (work: () => Promise<unknown>): Promise<boolean> => {
    setBusy(true);
    setError(null);
    try {
      await work();
      return true;
    } catch (e) {
      setError(e);
      return false;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}
