// Bundles the page (src/main.ts -> dist/app.js) with esbuild and copies its static files (and
// diff2html's stylesheet); prints the page's JavaScript gzipped and fails over its budget. With
// --tests, bundles the unit tests (tests/*.test.ts -> dist-tests/) for `node --test`.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

/** The page's JavaScript, gzipped, may weigh at most this (issue 26; README "Budgets"). */
const JS_BUDGET_KB = 150;

// The protocol code is generated once, in the TypeScript client (clients/ts/src/gen), and imported
// from there. Its `@bufbuild/protobuf` imports would otherwise resolve to clients/ts/node_modules
// and bundle a second copy of the runtime: an aliased import resolves from this directory instead.
// The views are Preact components written in JSX (automatic runtime).
const shared = { alias: { "@bufbuild/protobuf": "@bufbuild/protobuf" }, jsx: "automatic", jsxImportSource: "preact" };

if (process.argv.includes("--tests")) {
  const entries = readdirSync("tests").filter((f) => f.endsWith(".test.ts")).map((f) => `tests/${f}`);
  await build({ entryPoints: entries, bundle: true, platform: "node", format: "esm", outdir: "dist-tests", outExtension: { ".js": ".mjs" }, logLevel: "warning", ...shared });
} else {
  mkdirSync("dist", { recursive: true });
  await build({ entryPoints: { app: "src/main.ts" }, bundle: true, format: "esm", target: "es2022", minify: true, sourcemap: true, outdir: "dist", logLevel: "warning", ...shared });
  for (const file of ["index.html", "styles.css"]) copyFileSync(`src/${file}`, `dist/${file}`);
  copyFileSync("node_modules/diff2html/bundles/css/diff2html.min.css", "dist/diff2html.min.css");
  const gzippedKb = gzipSync(readFileSync("dist/app.js"), { level: 9 }).length / 1024;
  console.log(`page JS: ${gzippedKb.toFixed(1)} KB gzipped (budget ${JS_BUDGET_KB} KB)`);
  if (gzippedKb > JS_BUDGET_KB) {
    console.error(`the page's JavaScript is over its budget: ${gzippedKb.toFixed(1)} KB > ${JS_BUDGET_KB} KB gzipped`);
    process.exit(1);
  }
}
