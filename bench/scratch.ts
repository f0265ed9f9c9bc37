// The suite's scratch space: a fresh ext4 filesystem in a sparse image file below
// $TMPDIR/layerfs-bench-suite-XXXXXX, loop-mounted (direct IO, so the page cache holds each
// block once) at .../fs. Every layer set, upper, work dir and raw copy lives in it.
//
// Why not the temp dir itself: this machine's root filesystem is mounted with online discard,
// where deleting a file that has data blocks costs about a millisecond — removing one full
// run's uppers (some 200 000 small files) took minutes, more than the whole time budget. The
// image is mounted without discard; at the end it is unmounted (the loop device detaches
// itself) and the image file deleted.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run, runOk } from './common.ts';

export interface Scratch {
  /** The temp dir holding the image and the mount point; removed at the end. */
  base: string;
  /** The mounted scratch filesystem. */
  dir: string;
}

export async function makeScratch(gib: number, log: (s: string) => void): Promise<Scratch> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-bench-suite-'));
  const st = fs.statfsSync(base);
  const free = (st.bavail * st.bsize) / 2 ** 30;
  if (free < gib) {
    fs.rmSync(base, { recursive: true, force: true });
    throw new Error(`${os.tmpdir()} has ${free.toFixed(1)} GiB free; the run needs up to ${gib} GiB`);
  }
  const img = path.join(base, 'scratch.img');
  const dir = path.join(base, 'fs');
  fs.mkdirSync(dir);
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, gib * 2 ** 30); // sparse: the host file only grows as blocks are used
  // One inode per 8 KiB: the sets and uppers are mostly tiny files.
  await runOk('mkfs.ext4', ['-q', '-F', '-i', '8192', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', img]);
  let dev = '';
  for (const extra of [['--direct-io=on'], []]) {
    const r = await run('losetup', ['--find', '--show', ...extra, img]);
    if (r.code === 0) {
      dev = r.stdout.toString().trim();
      break;
    }
    log(`bench: losetup ${extra.join(' ')}: ${r.stderr.trim()}`);
  }
  if (!dev) throw new Error(`losetup failed for ${img}`);
  try {
    await runOk('mount', ['-t', 'ext4', '-o', 'nodiscard', dev, dir]);
  } finally {
    // Mounted: the device detaches itself at unmount (autoclear). Not mounted: detached now.
    await run('losetup', ['-d', dev]);
  }
  return { base, dir };
}
