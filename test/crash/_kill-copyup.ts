// Part of the kill -9 harness (_kill.ts, which describes it and runs the rounds): the copyup kind,
// a 1-byte append to a large lower file.

import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { hashFile, sha256, sleep, workEntries } from './_lib.ts';
import { GID, UID, exists, killNow, start, type Ctx, type Kind } from './_kill-common.ts';

interface CopyupInfo {
  cls: string;
  childOk: boolean;
  tmpSize: number;
}

export function copyupKind(sizeMiB: number): Kind<CopyupInfo> {
  const size = sizeMiB * 1024 * 1024;
  let hLower = '';
  let hLowerX = '';
  let copyMs = 0;
  const big = (i: number | string) => `big.${i}`;
  const trigger = (c: Ctx, name: string) => start('/bin/sh', ['-c', 'printf x >> "$1"', 'sh', path.join(c.mnt, name)]);

  /**
   * Spin (in slices of 20 ms, yielding in between so the child's exit is noticed) until
   * `check` says done; a busy wait reacts within microseconds, which a copy at GiB/s needs.
   */
  async function spin(check: () => boolean, child: { done: Promise<unknown> }, what: string): Promise<void> {
    let finished = false;
    void child.done.then(() => (finished = true));
    const until = Date.now() + 60_000;
    for (;;) {
      const slice = performance.now() + 20;
      while (performance.now() < slice) if (check()) return;
      if (finished || Date.now() > until) {
        if (finished) return;
        throw new Error(`${what}: nothing happened within 60 s`);
      }
      await new Promise((r) => setImmediate(r));
    }
  }

  /** The copy's temporary file in the work dir, once it shows (null: the copy-up is over). */
  async function copyStarted(c: Ctx, name: string, child: { done: Promise<unknown> }): Promise<string | null> {
    let tmp: string | null = null;
    await spin(() => {
      const e = workEntries(c.work).find((x) => x.type === 'file');
      if (e) tmp = path.join(c.work, 'work', e.name);
      return tmp !== null || exists(path.join(c.upper, name));
    }, child, `copy-up of ${name}`);
    return tmp;
  }

  return {
    async prepare(c, rounds) {
      const l0 = c.lowers[0]!;
      const data = cryptoRandomBytes(size);
      hLower = sha256(data);
      hLowerX = sha256(Buffer.concat([data, Buffer.from('x')]));
      const src = path.join(l0, 'big.src');
      fs.writeFileSync(src, data);
      fs.chownSync(src, UID, GID);
      fs.chmodSync(src, 0o640);
      sys.lsetxattr(src, 'user.crash', 'yes');
      fs.utimesSync(src, 1_000_000_000, 1_100_000_000);
      // Every round copies up its own name: hard links to the one lower inode.
      for (const i of [...Array(rounds).keys(), 'calib']) fs.linkSync(src, path.join(l0, big(i)));
      fs.writeFileSync(path.join(c.lowers[1]!, 'other'), 'lower1\n');
    },
    async calibrate(c, _r) {
      const t0 = performance.now();
      const { code, stderr } = await trigger(c, big('calib')).done;
      copyMs = performance.now() - t0;
      if (code !== 0) throw new Error(`calibration append failed: ${stderr}`);
      c.log(`a 1-byte append that copies up ${sizeMiB} MiB takes ${copyMs.toFixed(0)} ms here (uninterrupted); 85% of the kills are aimed at a random byte of the copy, 15% at a random time in 1.3 times that`);
    },
    async round(c, i, r, pid) {
      const name = big(i);
      const byBytes = r() < 0.85;
      const fraction = r();
      const t00 = performance.now();
      const child = trigger(c, name);
      if (byBytes) {
        // Mostly: kill once the copy in work/ has reached a random fraction of the file.
        const tmp = await copyStarted(c, name, child);
        const target = fraction * size;
        if (tmp) {
          await spin(() => {
            try {
              return fs.statSync(tmp).size >= target;
            } catch {
              return true; // renamed into place (or gone): too late
            }
          }, child, `copy-up of ${name}`);
        }
      } else {
        // Sometimes: at a random time from the trigger on, so that kills also land before the
        // copy starts and around the rename into the upper.
        await sleep(fraction * copyMs * 1.3 - (performance.now() - t00));
      }
      await killNow(pid);
      // Where did it land? (The daemon is dead: nothing changes any more.)
      const tmp = workEntries(c.work).filter((e) => e.type === 'file');
      const tmpSize = tmp.length ? Math.max(...tmp.map((e) => e.size)) : -1;
      let cls: string;
      if (exists(path.join(c.upper, name))) cls = 'after the rename into the upper';
      else if (tmp.length === 0) cls = 'before the copy started';
      else if (tmpSize < size) cls = 'mid-copy';
      else cls = 'copied, before the rename';
      const { code } = await child.done;
      return { cls, childOk: code === 0, tmpSize };
    },
    between(c, i) {
      // Round i-1's copy is verified: drop it so the upper does not grow by 64 MiB a round.
      if (i > 0) fs.rmSync(path.join(c.upper, big(i - 1)), { force: true });
      if (i === 0) fs.rmSync(path.join(c.upper, big('calib')), { force: true });
    },
    async verify(c, i, info) {
      const problems: string[] = [];
      const name = big(i);
      const m = path.join(c.mnt, name);
      const u = path.join(c.upper, name);
      const lst = fs.lstatSync(path.join(c.lowers[0]!, 'big.src'));
      const h = await hashFile(m);
      const st = fs.statSync(m);
      if (h !== hLower && h !== hLowerX) {
        problems.push(`${name}: the union shows a partial or corrupt file (size ${st.size} of ${size}${info.cls ? `, kill ${info.cls}` : ''})`);
      }
      if (info.childOk && h !== hLowerX) problems.push(`${name}: the append returned success but is not there`);
      if ((st.mode & 0o7777) !== 0o640 || st.uid !== UID || st.gid !== GID) {
        problems.push(`${name}: metadata through the union mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} gid=${st.gid}`);
      }
      if (exists(u)) {
        const hu = await hashFile(u);
        if (hu !== h) problems.push(`${name}: the upper copy differs from what the union shows`);
        const us = fs.lstatSync(u);
        if ((us.mode & 0o7777) !== 0o640 || us.uid !== UID || us.gid !== GID) {
          problems.push(`${name}: the upper copy has mode=${(us.mode & 0o7777).toString(8)} uid=${us.uid} gid=${us.gid} (incomplete copy-up)`);
        }
        if (sys.lgetxattr(u, 'user.crash')?.toString() !== 'yes') problems.push(`${name}: the upper copy lacks the lower's xattr`);
        if (h === hLower && us.mtimeMs !== lst.mtimeMs) problems.push(`${name}: an unmodified copy lacks the lower's mtime`);
      } else if (h !== hLower) {
        problems.push(`${name}: not in the upper, yet the union does not show the lower's content`);
      }
      const cls = info.cls === 'mid-copy' ? `mid-copy` : info.cls;
      return [problems, cls];
    },
  };
}

// =============================================================================== op lists (burst, dirrename)
