// The frame of a screen: its heading (focused on navigation, so a screen reader announces the new screen) and
// its actions.
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

export function Screen({ title, actions, children }: { title: string; actions?: ComponentChildren;
                                                       children: ComponentChildren }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => { heading.current?.focus({ preventScroll: true }); document.title = `${title} · vpnfleet`; }, [title]);
  return (
    <section class="screen">
      <header class="screen-head">
        <h1 ref={heading} tabIndex={-1}>{title}</h1>
        {actions && <div class="actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

export function Badge({ tone, children }: { tone: "ok" | "warn" | "bad" | "idle"; children: ComponentChildren }) {
  return <span class={`badge ${tone}`}>{children}</span>;
}
