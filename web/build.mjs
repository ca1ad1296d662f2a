// Bundles the page (src/main.ts -> dist/app.js) with esbuild and copies its static files; with
// --tests, bundles the unit tests (tests/*.test.ts -> dist-tests/) for `node --test`.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";

if (process.argv.includes("--tests")) {
  const entries = readdirSync("tests").filter((f) => f.endsWith(".test.ts")).map((f) => `tests/${f}`);
  await build({ entryPoints: entries, bundle: true, platform: "node", format: "esm", outdir: "dist-tests", outExtension: { ".js": ".mjs" }, logLevel: "warning" });
} else {
  mkdirSync("dist", { recursive: true });
  await build({ entryPoints: { app: "src/main.ts" }, bundle: true, format: "esm", target: "es2022", minify: true, sourcemap: true, outdir: "dist", logLevel: "warning" });
  for (const file of ["index.html", "styles.css"]) copyFileSync(`src/${file}`, `dist/${file}`);
}
