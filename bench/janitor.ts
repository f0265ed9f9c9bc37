// The clean-up of bench/startup.ts for when that script dies without doing it itself: tsx
// relays a Ctrl-C to the script and SIGKILLs it when it does not answer within ~60 ms, which a
// script inside a spawnSync never does. bench/startup.ts starts this process detached (its own
// session, so the Ctrl-C does not reach it) with a pipe on its stdin; when the pipe closes (the
// script is gone, however it ended) it cleans the run's temp dir T:
//
//   - stops each engine of T (T/*/engine.lock: `layerfs engine stop --force`, then SIGTERM
//     and SIGKILL to that pid only, when it runs with that LAYERFS_ENGINE_DIR);
//   - unmounts (lazily) everything mounted below T;
//   - ends the processes that have T in their command line (fuse-overlayfs daemons, the
//     storm's processes): SIGTERM, by pid;
//   - removes T.
//
// After a normal run T is gone already and it just exits.
//
//   node --import tsx bench/janitor.ts LAYERFS T

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { enginePid, mountsBelow, pgrepPath, stopEngine, waitGone } from './engine.ts';

function clean(layerfs: string, tmp: string): void {
  if (!fs.existsSync(tmp)) return;
  for (const e of fs.readdirSync(tmp)) {
    const dir = path.join(tmp, e);
    if (enginePid(dir) !== undefined) stopEngine(layerfs, dir, { ...process.env, LAYERFS_ENGINE_DIR: dir });
  }
  for (const m of mountsBelow(tmp)) spawnSync('umount', ['-l', m]);
  const left = pgrepPath(tmp + '/');
  for (const pid of left) process.kill(pid, 'SIGTERM');
  waitGone(left, 5_000);
  if (mountsBelow(tmp).length === 0) fs.rmSync(tmp, { recursive: true, force: true });
}

const [layerfs, tmp] = process.argv.slice(2);
if (!layerfs || !tmp || !path.isAbsolute(tmp)) {
  process.stderr.write('usage: node --import tsx bench/janitor.ts LAYERFS TMPDIR\n');
  process.exit(2);
}
process.stdin.on('data', () => undefined);
process.stdin.on('close', () => {
  clean(layerfs, tmp);
  process.exit(0);
});
