// Bundles the page (src/main.ts -> dist/app.js) with esbuild and copies its static files; with
// --tests, bundles the unit tests (tests/*.test.ts -> dist-tests/) for `node --test`.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";

// The protocol code is generated once, in the TypeScript client (clients/ts/src/gen), and imported
// from there. Its `@bufbuild/protobuf` imports would otherwise resolve to clients/ts/node_modules
// and bundle a second copy of the runtime: an aliased import resolves from this directory instead.
const shared = { alias: { "@bufbuild/protobuf": "@bufbuild/protobuf" } };

if (process.argv.includes("--tests")) {
  const entries = readdirSync("tests").filter((f) => f.endsWith(".test.ts")).map((f) => `tests/${f}`);
  await build({ entryPoints: entries, bundle: true, platform: "node", format: "esm", outdir: "dist-tests", outExtension: { ".js": ".mjs" }, logLevel: "warning", ...shared });
} else {
  mkdirSync("dist", { recursive: true });
  await build({ entryPoints: { app: "src/main.ts" }, bundle: true, format: "esm", target: "es2022", minify: true, sourcemap: true, outdir: "dist", logLevel: "warning", ...shared });
  for (const file of ["index.html", "styles.css"]) copyFileSync(`src/${file}`, `dist/${file}`);
}
