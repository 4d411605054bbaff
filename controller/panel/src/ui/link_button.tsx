// A link that looks like a button: for actions that go to another screen (Create node -> #/nodes/new), which
// are links to assistive technology and the keyboard, not buttons.
import type { ComponentChildren } from "preact";
import "./link_button.css";

export function LinkButton({ href, primary, children, testId }: { href: string; primary?: boolean;
                                                                   children: ComponentChildren; testId?: string }) {
  return <a class={primary ? "button primary" : "button"} href={href} data-testid={testId}>{children}</a>;
}
