// A QR code drawn as SVG squares from uqr's module matrix (no canvas, no innerHTML): sharp at any size,
// readable by a phone camera and by the QR decoder the browser tests use on a screenshot.
import { encode } from "uqr";

export function QrCode({ text, label, size = 220 }: { text: string; label: string; size?: number }) {
  const { data } = encode(text, { ecc: "M", border: 2 });
  const n = data.length;
  const cells: string[] = [];
  data.forEach((row, y) => row.forEach((on, x) => { if (on) cells.push(`M${x} ${y}h1v1h-1z`); }));
  return (
    <svg class="qr" role="img" aria-label={label} viewBox={`0 0 ${n} ${n}`} width={size} height={size}
         shape-rendering="crispEdges">
      <rect width={n} height={n} fill="#fff" />
      <path d={cells.join("")} fill="#000" />
    </svg>
  );
}
