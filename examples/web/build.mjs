// Bundles the page into dist/: dist/index.html and dist/main.js (with its source map).
// WebTorrent targets Node and browsers; in a browser bundle, its package.json `browser` field
// drops the Node-only modules (TCP, uTP, DHT, file system), and the few Node builtins left are
// provided here the way WebTorrent's own browser build provides them.
import { build } from 'esbuild'
import { copyFile, mkdir, rm } from 'node:fs/promises'

const dist = new URL('./dist/', import.meta.url)
await rm(dist, { recursive: true, force: true })
await mkdir(dist)

await build({
  entryPoints: ['src/main.js'],
  outfile: 'dist/main.js',
  bundle: true,
  format: 'esm',
  platform: 'browser', // honours each package's `browser` field
  target: 'es2022',
  minify: true,
  sourcemap: true,
  legalComments: 'linked', // the dependencies' licence notices, in dist/main.js.LEGAL.txt
  alias: { path: 'path-esm' }, // `events` resolves to the npm package of that name
  inject: ['src/node-globals.js'], // `process`
  define: { global: 'globalThis' },
  logLevel: 'info'
})
await copyFile(new URL('./index.html', import.meta.url), new URL('index.html', dist))
