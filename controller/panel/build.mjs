// Builds the panel into dist/ (or the directory given): dist/index.html and dist/assets/app-<hash>.{js,css}.
// The output is committed and a test rebuilds it to check it is current (as the protobuf modules are); esbuild
// at a pinned version makes the same bytes from the same sources, so the check is exact.
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { extname, join, resolve } from "node:path";

const out = resolve(process.argv[2] ?? "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: "src/main.tsx" },
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  outdir: join(out, "assets"),
  write: false,
  logLevel: "warning",
});

// Each file is named by the SHA-256 of its bytes (esbuild's own [hash] also covers where the sources lie on
// disk, so the same sources checked out elsewhere would get other names), so a build is the same anywhere.
const named = {};
for (const file of result.outputFiles) {
  const ext = extname(file.path);
  const name = `app-${createHash("sha256").update(file.contents).digest("hex").slice(0, 12)}${ext}`;
  writeFileSync(join(out, "assets", name), file.contents);
  named[ext] = name;
}
const js = named[".js"];
const css = named[".css"];
if (!js || !css || result.outputFiles.length !== 2) {
  throw new Error(`build made ${result.outputFiles.map((f) => f.path).join(", ")}: expected one .js and one .css`);
}

// No inline script or style: the page's CSP allows only files from /ui/assets/.
writeFileSync(join(out, "index.html"), `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>vpnfleet</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/assets/${css}">
<script type="module" src="/ui/assets/${js}"></script>
</head>
<body>
<div id="app"></div>
<noscript>vpnfleet's panel needs JavaScript. The API is at /docs.</noscript>
</body>
</html>
`);
console.log(`panel: built ${out}: ${js}, ${css}`);
