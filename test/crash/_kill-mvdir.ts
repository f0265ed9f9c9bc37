// Part of the kill -9 harness (_kill.ts, which describes it and runs the rounds): the mvdir kind,
// `mv` of a lower directory (EXDEV, then a copy of the tree and the removal of the source).

import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from '../helpers/exec.ts';
import { fsp, int, pick, sleep } from './_lib.ts';
import { GID, UID, exists, killNow, mk, start, type Kind } from './_kill-common.ts';

interface MvInfo {
  code: number | null;
}

interface Content {
  type: 'dir' | 'file';
  data?: Buffer;
  mode: number;
}

async function walkContents(root: string): Promise<Map<string, Content> | null> {
  if (!exists(root)) return null;
  const out = new Map<string, Content>();
  const visit = async (abs: string, rel: string) => {
    for (const n of (await fsp.readdir(abs)).sort()) {
      const p = path.join(abs, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = await fsp.lstat(p);
      if (st.isDirectory()) {
        out.set(r, { type: 'dir', mode: st.mode & 0o7777 });
        await visit(p, r);
      } else {
        out.set(r, { type: 'file', data: await fsp.readFile(p), mode: st.mode & 0o7777 });
      }
    }
  };
  await visit(root, '');
  return out;
}

export function mvdirKind(): Kind<MvInfo> {
  let template = new Map<string, Content>();
  let mvMs = 0;
  const tree = (i: number | string) => `r/tree.${i}`;
  const moved = (i: number | string) => `r/moved.${i}`;
  return {
    async prepare(c, rounds, r) {
      const t = path.join(c.dir, 'template');
      for (const s of ['s0', 's1', 's2']) {
        mk(path.join(t, s));
        for (let k = 0; k < 20; k++) {
          const f = path.join(t, s, `f${k}`);
          fs.writeFileSync(f, cryptoRandomBytes(1024 + int(r, 48 * 1024)));
          fs.chmodSync(f, pick(r, [0o644, 0o600, 0o755, 0o640]));
        }
      }
      fs.writeFileSync(path.join(t, 's1', 'big'), cryptoRandomBytes(4 << 20));
      fs.writeFileSync(path.join(t, 'top'), cryptoRandomBytes(10 * 1024));
      template = (await walkContents(t))!;
      await runOk('chown', ['-R', `${UID}:${GID}`, t]);
      mk(path.join(c.lowers[0]!, 'r'));
      mk(path.join(c.lowers[1]!, 'r'));
      fs.writeFileSync(path.join(c.lowers[1]!, 'r', 'from-lower1'), 'lower1\n');
      for (const i of [...Array(rounds).keys(), 'calib']) await runOk('cp', ['-a', t, path.join(c.lowers[0]!, tree(i))]);
      fs.rmSync(t, { recursive: true });
    },
    async calibrate(c) {
      const t0 = performance.now();
      const { code, stderr } = await start('mv', [path.join(c.mnt, tree('calib')), path.join(c.mnt, moved('calib'))]).done;
      mvMs = performance.now() - t0;
      if (code !== 0) throw new Error(`calibration mv failed: ${stderr}`);
      const got = await walkContents(path.join(c.mnt, moved('calib')));
      if (!got || got.size !== template.size) throw new Error('calibration mv: incomplete copy');
      c.log(`mv of a lower tree (${template.size} entries, ${(treeBytes(template) / 1048576).toFixed(1)} MiB) takes ${mvMs.toFixed(0)} ms here; half the kills land at random in that window, half aimed at the removal of the source`);
    },
    async round(c, i, r, pid) {
      const child = start('mv', [path.join(c.mnt, tree(i)), path.join(c.mnt, moved(i))]);
      // Half the kills at a random time in the move (mostly the copy, which takes most of it);
      // half aimed at the removal of the source, which is short (whiteouts, copy-up of the
      // source's directories): a random delay after the source first shows up in the upper.
      const removal = r() < 0.5;
      const f = r();
      if (removal) {
        let finished = false;
        void child.done.then(() => (finished = true));
        while (!finished && !exists(path.join(c.upper, tree(i)))) await new Promise((res) => setImmediate(res));
        await sleep(f * 60);
      } else {
        await sleep(f * mvMs);
      }
      await killNow(pid);
      const { code } = await child.done;
      return { code };
    },
    async verify(c, i, info) {
      const problems: string[] = [];
      const src = await walkContents(path.join(c.mnt, tree(i)));
      const dst = await walkContents(path.join(c.mnt, moved(i)));
      const complete = (t: Map<string, Content> | null) => t !== null && t.size === template.size && [...template].every(([k, v]) => same(t.get(k), v));
      // The source: every entry still there is intact, nothing foreign.
      for (const [k, v] of src ?? []) {
        if (!same(v, template.get(k))) problems.push(`tree.${i}/${k}: the source changed (${describe(v, template.get(k))})`);
      }
      const srcComplete = complete(src);
      // The destination: what mv has copied so far; at most the one file in flight is short.
      let partial = 0;
      for (const [k, v] of dst ?? []) {
        const want = template.get(k);
        if (!want) {
          problems.push(`moved.${i}/${k}: not in the source tree`);
          continue;
        }
        if (want.type !== v.type) problems.push(`moved.${i}/${k}: ${v.type} instead of ${want.type}`);
        else if (v.type === 'file' && !v.data!.equals(want.data!)) {
          if (v.data!.length < want.data!.length && want.data!.subarray(0, v.data!.length).equals(v.data!)) partial++;
          else problems.push(`moved.${i}/${k}: content is not the source's, nor a prefix of it (${v.data!.length} bytes)`);
        }
      }
      if (partial > 1) problems.push(`moved.${i}: ${partial} incomplete files (mv copies one at a time)`);
      const dstComplete = complete(dst);
      if (!srcComplete && !dstComplete) {
        problems.push(`tree.${i} lost entries (mv was removing it) but moved.${i} is not a complete copy`);
      }
      if (info.code === 0 && (src !== null || !dstComplete)) problems.push(`mv reported success but the move is not complete`);
      let cls: string;
      if (!dst) cls = 'before the copy started';
      else if (!dstComplete) cls = 'while mv copied files';
      else if (srcComplete) cls = 'after the copy, before the removal';
      else if (src) cls = 'while mv removed the source';
      else cls = 'after mv finished';
      return [problems, cls];
    },
  };
}

function same(a: Content | undefined, b: Content | undefined): boolean {
  if (!a || !b || a.type !== b.type) return false;
  return a.type === 'dir' || a.data!.equals(b.data!);
}

function describe(a: Content | undefined, b: Content | undefined): string {
  if (!b) return 'foreign entry';
  if (!a) return 'missing';
  if (a.type !== b.type) return `${a.type} instead of ${b.type}`;
  return `${a.data?.length} bytes instead of ${b.data?.length}`;
}

function treeBytes(t: Map<string, Content>): number {
  let n = 0;
  for (const v of t.values()) n += v.data?.length ?? 0;
  return n;
}

// =============================================================================== the loop
