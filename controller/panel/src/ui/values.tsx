// Data shown as it is, never translated: names, addresses, ids and formatted figures carry translate={false},
// which is also how the untranslated-strings test (tests/browser) tells data from text that needs a catalog.
import type { ComponentChildren } from "preact";
import { useFormat } from "../i18n/format";

export function Value({ children, mono }: { children: ComponentChildren; mono?: boolean }) {
  return <span translate={false} class={mono ? "mono" : undefined}>{children}</span>;
}

export function Num({ n }: { n: number | null | undefined }) {
  const f = useFormat();
  return <span translate={false} class="num">{n === null || n === undefined ? "—" : f.number(n)}</span>;
}

export function Bytes({ n }: { n: number | null | undefined }) {
  const f = useFormat();
  return <span translate={false} class="num">{n === null || n === undefined ? "—" : f.bytes(n)}</span>;
}

export function Rate({ n }: { n: number | null | undefined }) {
  const f = useFormat();
  return <span translate={false} class="num">{n === null || n === undefined ? "—" : f.rate(n)}</span>;
}

export function When({ iso, date }: { iso: string | null | undefined; date?: boolean }) {
  const f = useFormat();
  return <time translate={false} dateTime={iso ?? undefined}>{date ? f.date(iso) : f.dateTime(iso)}</time>;
}

export function Ago({ iso }: { iso: string | null | undefined }) {
  const f = useFormat();
  return <time translate={false} dateTime={iso ?? undefined} title={iso ? f.dateTime(iso) : undefined}>{f.ago(iso)}</time>;
}
