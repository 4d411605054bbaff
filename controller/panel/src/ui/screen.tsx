// The frame of a screen: its heading (focused on navigation, so a screen reader announces the new screen) and
// its actions. `name` is the thing the screen shows (a node's name): data, so it is never translated.
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

export function Screen({ title, name, actions, children }: { title: string; name?: string;
                                                             actions?: ComponentChildren; children: ComponentChildren }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    heading.current?.focus({ preventScroll: true });
    document.title = `${name ? `${name} · ` : ""}${title} · vpnfleet`;
  }, [title, name]);
  return (
    <section class="screen">
      <header class="screen-head">
        <h1 ref={heading} tabIndex={-1}>{title}{name && <> <span translate={false}>{name}</span></>}</h1>
        {actions && <div class="actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

export function Badge({ tone, children }: { tone: "ok" | "warn" | "bad" | "idle"; children: ComponentChildren }) {
  return <span class={`badge ${tone}`}>{children}</span>;
}
