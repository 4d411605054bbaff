// Saving text the API answered as a file (a peer's .conf): a Blob in the page, so the secret in it never goes
// through another request or a URL anyone could open again.
export function saveText(text: string, filename: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/** A WireGuard config's file name: the one the API gave its download (Content-Disposition), else <name>.conf
 * in the characters the controller allows there. */
export function confFileName(name: string, response?: Response): string {
  const given = /filename="([^"]+)"/.exec(response?.headers.get("Content-Disposition") ?? "")?.[1];
  return given ?? `${name.replace(/[^A-Za-z0-9_=+.-]+/g, "_").slice(0, 15) || "wg0"}.conf`;
}
