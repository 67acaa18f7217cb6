// Runs the official AT Protocol reference PDS and a PLC directory for Hashroom's tests.
//
// Prints one JSON line {"pds": url, "plc": url} on stdout once both listen (on free ports),
// then runs until SIGTERM, SIGINT or end of stdin, and closes the network. Data goes under
// TMPDIR: the caller points TMPDIR at a directory it removes afterwards.
import devEnv from '@atproto/dev-env'

const { TestNetworkNoAppView } = devEnv

const network = await TestNetworkNoAppView.create({
  pds: { hostname: 'localhost' },
  plc: {},
})

process.stdout.write(JSON.stringify({ pds: network.pds.url, plc: network.plc.url }) + '\n')

let closing = false
async function shutdown(reason) {
  if (closing) return
  closing = true
  process.stderr.write(`pds.mjs: closing (${reason})\n`)
  // A hung close must not leave a stray process behind: the parent waits only so long.
  const force = setTimeout(() => process.exit(1), 10_000)
  force.unref()
  try {
    await network.close()
  } finally {
    process.exit(0)
  }
}

process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
process.stdin.on('end', () => shutdown('stdin closed'))
process.stdin.on('error', () => shutdown('stdin error'))
process.stdin.resume()
