// Node's `process` global, which some of WebTorrent's dependencies read, for the browser
// bundle: build.mjs injects it. WebTorrent ships this small stand-in for its own bundle.
import * as process from 'webtorrent/polyfills/process-fast.js'
export { process }
