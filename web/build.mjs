// Builds the page into ../upload_service/web_assets, which the service serves at / and /assets/.
//
// The page's script and style get content-hashed names (cached for a year); index.html names
// them and is never cached. Swagger UI and ReDoc are copied under their versions, so /docs and
// /redoc need no CDN. manifest.json tells the service those URLs.

import { build } from "esbuild";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "upload_service", "web_assets");
const assets = join(out, "assets");
const require = createRequire(import.meta.url);

rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const result = await build({
  entryPoints: { app: join(here, "src", "main.ts") },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  outdir: assets,
  entryNames: "[name]-[hash]",
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((path) => path.split("/").pop());
const script = outputs.find((name) => name.endsWith(".js"));
const style = outputs.find((name) => name.endsWith(".css"));
const html = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("./app.js", `/assets/${script}`)
  .replace("./app.css", `/assets/${style}`);
writeFileSync(join(out, "index.html"), html);

function vendor(pkg, files) {
  const root = dirname(require.resolve(`${pkg}/package.json`));
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const folder = `vendor/${pkg}-${version}`;
  mkdirSync(join(assets, folder), { recursive: true });
  for (const [from, to] of Object.entries(files)) copyFileSync(join(root, from), join(assets, folder, to));
  return `/assets/${folder}`;
}

const swagger = vendor("swagger-ui-dist", {
  "swagger-ui-bundle.js": "swagger-ui-bundle.js",
  "swagger-ui.css": "swagger-ui.css",
  "favicon-32x32.png": "favicon-32x32.png",
  "LICENSE": "LICENSE",
});
const redoc = vendor("redoc", { "bundles/redoc.standalone.js": "redoc.standalone.js", "LICENSE": "LICENSE" });

const manifest = {
  swagger_ui_js: `${swagger}/swagger-ui-bundle.js`,
  swagger_ui_css: `${swagger}/swagger-ui.css`,
  swagger_favicon: `${swagger}/favicon-32x32.png`,
  redoc_js: `${redoc}/redoc.standalone.js`,
  // A digest of the page's own assets, for a quick look at which build is served.
  build: createHash("sha256").update(html).digest("hex").slice(0, 12),
};
writeFileSync(join(out, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(`web: built ${script}, ${style} into ${out}`);
