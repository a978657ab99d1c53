// Upload one file to a tus endpoint with tus-js-client under Node, as a browser-less client would.
//
//   node tus-upload.mjs --endpoint URL --file PATH --token JWT [--chunk-size BYTES|Infinity]
//        [--upload-url URL] [--delay-ms N] [--retry-delays JSON] [--filename NAME]
//        [--creation-with-upload] [--override-patch-method]
//
// Prints one JSON object a line on stdout, for the test that runs it to follow:
//   {"event":"url","url":…}                          the upload's URL, once known (keep it to resume)
//   {"event":"request","method":…,"offset":…}         each request, before it is sent
//   {"event":"response","method":…,"status":…,"offset":…,"document_location":…}
//   {"event":"progress","offset":…,"total":…}         bytes sent so far (about every 1 %)
//   {"event":"chunk","offset":…,"total":…}            the server's offset after each PATCH
//   {"event":"success","url":…,"document_location":…}
//   {"event":"error","message":…,"status":…}          then exit code 1
// `--delay-ms` waits that long before each PATCH: a slow client, so that a test can act mid-upload.

import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import tus from 'tus-js-client'

const { values: args } = parseArgs({
  options: {
    endpoint: { type: 'string' },
    file: { type: 'string' },
    token: { type: 'string' },
    'chunk-size': { type: 'string', default: 'Infinity' },
    'upload-url': { type: 'string' },
    'delay-ms': { type: 'string', default: '0' },
    'retry-delays': { type: 'string' },
    filename: { type: 'string' },
    'creation-with-upload': { type: 'boolean', default: false },
    'override-patch-method': { type: 'boolean', default: false },
  },
})

for (const required of ['endpoint', 'file', 'token']) {
  if (!args[required]) {
    process.stderr.write(`missing --${required}\n`)
    process.exit(2)
  }
}

const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const methodOf = (req) => req.getHeader('X-HTTP-Method-Override') || req.getMethod()
const offsetOf = (value) => (value == null || value === '' ? null : Number(value))

const chunkSize = args['chunk-size'] === 'Infinity' ? Infinity : Number(args['chunk-size'])
const delayMs = Number(args['delay-ms'])
const size = fs.statSync(args.file).size
// Only about a hundred progress lines per upload, whatever the chunk size.
const progressStep = Math.max(1, Math.floor(size / 100))
let lastProgress = -Infinity
let lastResponse = null

const options = {
  endpoint: args.endpoint,
  uploadUrl: args['upload-url'] || null,
  chunkSize,
  uploadSize: size,
  metadata: {
    filename: args.filename || path.basename(args.file),
    filetype: 'application/octet-stream',
  },
  uploadDataDuringCreation: args['creation-with-upload'],
  overridePatchMethod: args['override-patch-method'],
  headers: { Authorization: `Bearer ${args.token}` },
  onUploadUrlAvailable: () => emit({ event: 'url', url: upload.url }),
  onBeforeRequest: async (req) => {
    const method = methodOf(req)
    emit({ event: 'request', method, offset: offsetOf(req.getHeader('Upload-Offset')) })
    if (method === 'PATCH' && delayMs > 0) {
      await sleep(delayMs)
    }
  },
  onAfterResponse: (req, res) => {
    lastResponse = res
    emit({
      event: 'response',
      method: methodOf(req),
      status: res.getStatus(),
      offset: offsetOf(res.getHeader('Upload-Offset')),
      document_location: res.getHeader('Document-Location') || null,
    })
  },
  onProgress: (sent, total) => {
    if (sent - lastProgress >= progressStep || sent === total || lastProgress < 0) {
      lastProgress = sent
      emit({ event: 'progress', offset: sent, total })
    }
  },
  onChunkComplete: (_chunk, accepted, total) => emit({ event: 'chunk', offset: accepted, total }),
  onSuccess: () => {
    emit({
      event: 'success',
      url: upload.url,
      document_location: lastResponse ? lastResponse.getHeader('Document-Location') || null : null,
    })
    process.exit(0)
  },
  onError: (error) => {
    const res = error.originalResponse
    emit({
      event: 'error',
      message: String(error.message || error),
      status: res ? res.getStatus() : null,
      body: res ? res.getBody() : null,
    })
    process.exit(1)
  },
}
if (args['retry-delays'] !== undefined) {
  options.retryDelays = JSON.parse(args['retry-delays'])
}

// A file stream with a path: tus-js-client reads each chunk from disk (seekable, constant memory).
const upload = new tus.Upload(fs.createReadStream(args.file), options)
upload.start()
