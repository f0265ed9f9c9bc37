// What the tests of src/config.ts (config*.test.ts) share: requests, expected errors, a fixture
// tree of layers.

import type { ExecutionContext } from 'ava';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultMountRequest, ConfigError, parseMountArgs, validateMountConfig } from '../src/config.ts';
import type { MountRequest } from '../src/config.ts';

export function req(fields: Partial<MountRequest>): MountRequest {
  return { ...defaultMountRequest(), ...fields };
}

export function parseError(t: ExecutionContext, argv: string[], message: string): void {
  t.throws(() => parseMountArgs(argv), { instanceOf: ConfigError, message }, JSON.stringify(argv));
}

export function optError(t: ExecutionContext, opts: string, message: string): void {
  parseError(t, ['-o', opts, '/m'], message);
}

/** A fresh directory tree, removed in teardown:
 *  ROOT/{l1,l2,u,w,m}/ , ROOT/file , ROOT/link/l1 -> ../l1 */
export async function fixture(t: ExecutionContext): Promise<string> {
  const root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'layerfs-config-')));
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  for (const d of ['l1', 'l2', 'u', 'w', 'm', 'link']) await fsp.mkdir(path.join(root, d));
  await fsp.writeFile(path.join(root, 'file'), 'x');
  await fsp.symlink('../l1', path.join(root, 'link', 'l1'));
  return root;
}

export function rwReq(root: string, fields: Partial<MountRequest> = {}): MountRequest {
  return req({
    lowerdirs: [`${root}/l1`, `${root}/l2`],
    upperdir: `${root}/u`,
    workdir: `${root}/w`,
    mountpoint: `${root}/m`,
    ...fields,
  });
}

export const EMPTY_MOUNTINFO = '';

export async function validateError(
  t: ExecutionContext,
  r: MountRequest,
  message: string,
  opts: { cwd?: string; mountinfo?: string } = { mountinfo: EMPTY_MOUNTINFO },
): Promise<void> {
  await t.throwsAsync(() => validateMountConfig(r, opts), { instanceOf: ConfigError, message });
}
