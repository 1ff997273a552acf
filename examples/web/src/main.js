// Downloads one public seedbucket object in the browser with WebTorrent.
//
// The bytes come from two kinds of sources, both announced by the object's .torrent:
//   - the server's webseed (`url-list`: plain HTTP range requests to seedbucket), and
//   - other visitors of this page (WebRTC data channels), found through the server's
//     WebSocket tracker (the `ws://` URL in `announce-list`).
// The page counts the bytes each kind sent, checks the SHA-256 of the result, and keeps
// seeding to later visitors for as long as it stays open.
//
// Input, from the page's query string:
//   src       URL of the object's .torrent (e.g. /bucket/key?torrent, relative to this page),
//             or a magnet link. (Not named `torrent`: on a page served from an S3 bucket,
//             `?torrent` would ask the server for the page's own torrent.)
//   sha256    expected SHA-256 of the object, hex (optional; without it nothing is verified)
//   tracker   an extra tracker URL (ws:// or wss://) besides the torrent's own (repeatable)
//   strategy  piece order: rarest (the default here: the pieces the fewest peers have first,
//             so visitors fetch different pieces from the webseed and trade them) or
//             sequential (WebTorrent's default, in order, for playing media as it arrives)
//   webconns  requests in flight to the webseed at once (WebTorrent's maxWebConns, default
//             4); fewer leave more of the object to other visitors, at some cost in speed
//   ice       an ICE server URL for WebRTC, e.g. stun:stun.example.net:3478 (repeatable;
//             default none: peers then connect over their host addresses only)
//
// `window.seedbucketDownload` holds the state below, for scripts and tests to read.

import WebTorrent from 'webtorrent'
import MemoryChunkStore from 'memory-chunk-store'

const params = new URLSearchParams(window.location.search)

const status = {
  state: 'starting', // starting | fetching-torrent | downloading | verifying | seeding | failed
  done: false, // the whole object arrived and was hashed
  name: null,
  length: null,
  infoHash: null,
  progress: 0, // 0..1, verified pieces
  sha256: null, // hex digest of what arrived
  sha256Expected: (params.get('sha256') || '').toLowerCase() || null,
  sha256Ok: null, // true / false once hashed with an expected value; null without one
  bytesFromWebseed: 0, // piece bytes received over webseed wires (HTTP to the server)
  bytesFromPeers: 0, // piece bytes received over WebRTC wires (other browsers)
  bytesToPeers: 0, // piece bytes this page sent to other browsers
  peers: 0, // WebRTC wires open now
  peersSeen: 0, // WebRTC wires opened since the start
  webseeds: 0, // webseed wires open now
  seconds: null, // from the start to the last byte
  warnings: [], // WebTorrent's warnings (the most recent ones)
  errors: []
}
window.seedbucketDownload = status

const MAX_NOTES = 50
function note (list, err) {
  list.push(String(err && err.message ? err.message : err))
  if (list.length > MAX_NOTES) list.shift()
}

function fail (err) {
  note(status.errors, err)
  status.state = 'failed'
  render()
}

// --- counting where the bytes come from -------------------------------------------------
// Every connection of a torrent is a "wire" (bittorrent-protocol). `wire.type` says what is
// underneath: 'webSeed' for the HTTP webseed, 'webrtc' for another browser. A wire emits
// 'download' with the size of each piece block it receives and 'upload' with each block it
// sends. Wires are dropped from `torrent.wires` when they close, so the page adds the bytes
// up itself as they arrive instead of summing `wire.downloaded` at the end.
function countWire (wire) {
  if (wire.type === 'webrtc') status.peersSeen++
  wire.on('download', (n) => {
    if (wire.type === 'webSeed') status.bytesFromWebseed += n
    else if (wire.type === 'webrtc') status.bytesFromPeers += n
  })
  wire.on('upload', (n) => {
    if (wire.type === 'webrtc') status.bytesToPeers += n
  })
}

function countOpenWires (torrent) {
  status.peers = torrent.wires.filter((w) => w.type === 'webrtc').length
  status.webseeds = torrent.wires.filter((w) => w.type === 'webSeed').length
}

// --- the download ---------------------------------------------------------------------------
async function torrentId (source) {
  if (source.startsWith('magnet:')) return source
  status.state = 'fetching-torrent'
  const res = await fetch(source)
  if (!res.ok) throw new Error(`GET ${source}: HTTP ${res.status}`)
  return new Uint8Array(await res.arrayBuffer())
}

async function sha256Hex (buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer)
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('')
}

async function onDone (torrent, started) {
  status.seconds = (performance.now() - started) / 1000
  status.progress = torrent.progress
  status.state = 'verifying'
  render()
  if (torrent.files.length !== 1) throw new Error(`expected one file, the torrent has ${torrent.files.length}`)
  const file = torrent.files[0]
  const bytes = await file.arrayBuffer()
  status.sha256 = await sha256Hex(bytes)
  if (status.sha256Expected) status.sha256Ok = status.sha256 === status.sha256Expected
  status.done = true
  status.state = 'seeding'
  const link = document.getElementById('save')
  link.href = URL.createObjectURL(new Blob([bytes]))
  link.download = file.name
  link.hidden = false
  render()
}

async function start () {
  const source = params.get('src')
  if (!source) throw new Error('no ?src= in the page URL (a .torrent URL or a magnet link)')
  const started = performance.now()
  const id = await torrentId(source)

  const client = new WebTorrent({
    dht: false, // no DHT in browsers anyway; said so for clarity
    tracker: {
      // WebTorrent's default ICE servers are public STUN hosts; this page uses only the ones
      // it is given.
      rtcConfig: { iceServers: params.getAll('ice').map((urls) => ({ urls })) }
    }
  })
  client.on('error', fail)
  window.seedbucketClient = client // for debugging from the console

  status.state = 'downloading'
  // Pieces are kept in memory: WebTorrent's browser default (the origin's private file
  // system) is shared by the tabs of one origin, which would let a tab start from another
  // tab's pieces instead of downloading them.
  const torrent = client.add(id, {
    store: MemoryChunkStore,
    announce: params.getAll('tracker'),
    maxWebConns: Number(params.get('webconns')) || undefined,
    strategy: params.get('strategy') || 'rarest'
  })
  torrent.on('wire', countWire)
  torrent.on('warning', (err) => note(status.warnings, err))
  torrent.on('error', fail)
  torrent.on('metadata', () => {
    status.name = torrent.name
    status.length = torrent.length
    status.infoHash = torrent.infoHash
    document.title = `${torrent.name} - seedbucket WebTorrent`
  })
  torrent.on('done', () => onDone(torrent, started).catch(fail))

  setInterval(() => {
    status.progress = torrent.progress
    countOpenWires(torrent)
    render(torrent)
  }, 250)
}

// --- the view -------------------------------------------------------------------------------
function mib (n) {
  return `${(n / 1048576).toFixed(2)} MiB`
}

function text (id, value) {
  document.getElementById(id).textContent = value
}

function render (torrent) {
  text('state', status.state)
  text('name', status.name || '-')
  text('size', status.length === null ? '-' : mib(status.length))
  text('progress', `${(status.progress * 100).toFixed(1)} %`)
  document.getElementById('bar').value = status.progress
  text('from-webseed', mib(status.bytesFromWebseed))
  text('from-peers', mib(status.bytesFromPeers))
  text('to-peers', mib(status.bytesToPeers))
  text('peers', `${status.peers} now, ${status.peersSeen} in all`)
  text('sha256', status.sha256 === null
    ? '-'
    : `${status.sha256} ${status.sha256Ok === true ? '(matches)' : status.sha256Ok === false ? '(DOES NOT MATCH)' : '(nothing to compare with)'}`)
  text('time', status.seconds === null ? '-' : `${status.seconds.toFixed(1)} s`)
  text('errors', status.errors.join('\n'))
  // Browsers use only ws:// and wss:// trackers: WebTorrent warns of the torrent's HTTP and UDP
  // ones, which serve other BitTorrent clients.
  text('warnings', status.warnings.map((w) => `warning: ${w}`).join('\n'))

  if (torrent) {
    const rows = torrent.wires.map((w) => {
      const tr = document.createElement('tr')
      const where = w.type === 'webSeed' ? 'server (webseed)' : `${w.remoteAddress || '?'}:${w.remotePort || '?'}`
      for (const cell of [w.type, where, mib(w.downloaded), mib(w.uploaded)]) {
        const td = document.createElement('td')
        td.textContent = cell
        tr.append(td)
      }
      return tr
    })
    document.getElementById('wires').replaceChildren(...rows)
  }
}

render()
start().catch(fail)
