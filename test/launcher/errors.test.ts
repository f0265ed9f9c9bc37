// Bad input: one clear line on stderr, exit status 125, and nothing mounted or created.

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { leftovers, runIn, sandbox } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot } from './_helpers.ts';

const t0 = isRoot() ? test : test.skip;

const cases: [string, (d: string) => string[], RegExp][] = [
  ['a missing command', () => ['--lower', rootfs().lower], /^layerfs run: missing command: /],
  ['a missing command after --', () => ['--lower', rootfs().lower, '--'], /^layerfs run: missing command: /],
  ['no layers', () => ['--', '/bin/true'], /^layerfs run: missing --lower A:B:C/],
  ['a non-existent layer', (d) => ['--lower', `${path.join(d, 'nope')}:${rootfs().base}`, '--', '/bin/true'], /^layerfs run: lowerdir '.*\/nope' does not exist$/],
  ['a layer that is a file', (d) => ['--lower', `${path.join(d, 'file')}:${rootfs().base}`, '--', '/bin/true'], /^layerfs run: lowerdir '.*\/file' is not a directory$/],
  ['a -v without a target', () => ['--lower', rootfs().lower, '-v', '/tmp', '--', '/bin/true'], /^layerfs run: bad volume '\/tmp': expected HOST:CONTAINER\[:ro\|rw\]$/],
  ['a -v with a bad mode', () => ['--lower', rootfs().lower, '-v', '/tmp:/x:rx', '--', '/bin/true'], /^layerfs run: bad volume '\/tmp:\/x:rx': mode must be 'ro' or 'rw'/],
  ['a -v with a relative target', () => ['--lower', rootfs().lower, '-v', '/tmp:x', '--', '/bin/true'], /must be an absolute path inside the container$/],
  ['a volume target outside the root', () => ['--lower', rootfs().lower, '-v', '/tmp:/../../etc', '--', '/bin/true'], /^layerfs run: volume target .* is outside the container's root/],
  ['a volume source that does not exist', (d) => ['--lower', rootfs().lower, '-v', `${d}/nope:/x`, '--', '/bin/true'], /^layerfs run: volume source '.*\/nope' does not exist on the host$/],
  ['an unparsable memory limit', () => ['--lower', rootfs().lower, '--memory', 'lots', '--', '/bin/true'], /^layerfs run: bad memory limit 'lots'/],
  ['a negative pids limit', () => ['--lower', rootfs().lower, '--pids-limit', '-3', '--', '/bin/true'], /^layerfs run: bad pids limit '-3'/],
  ['an unparsable cpu limit', () => ['--lower', rootfs().lower, '--cpus', '1.5.2', '--', '/bin/true'], /^layerfs run: bad cpu limit '1\.5\.2'/],
  ['too many cpus', () => ['--lower', rootfs().lower, '--cpus', '999', '--', '/bin/true'], /^layerfs run: bad cpu limit '999': expected a number from 0\.01 to \d+$/],
  ['--upper without --work', (d) => ['--lower', rootfs().lower, '--upper', d, '--', '/bin/true'], /^layerfs run: --upper and --work go together$/],
  ['an unknown option', () => ['--lower', rootfs().lower, '--frobnicate', '--', '/bin/true'], /^layerfs run: unknown option '--frobnicate'/],
  ['a bad -u', () => ['--lower', rootfs().lower, '-u', 'root:wheel:x', '--', '/bin/true'], /^layerfs run: bad user 'root:wheel:x': expected NAME or UID, optionally with :GROUP or :GID$/],
  ['a bad --net', () => ['--lower', rootfs().lower, '--net', 'bridge', '--', '/bin/true'], /^layerfs run: bad network 'bridge'/],
  ['a working directory below a file', () => ['--lower', rootfs().lower, '-w', '/etc/motd/x', '--', '/bin/true'], /^layerfs run: cannot create working directory '\/etc\/motd\/x': '\/etc\/motd\/x': '\/etc\/motd' is not a directory in the container$/],
  ['a volume target below a file', (d) => ['--lower', rootfs().lower, '-v', `${d}:/etc/motd/x`, '--', '/bin/true'], /^layerfs run: '\/etc\/motd\/x': '\/etc\/motd' is not a directory in the container$/],
];

for (const [name, args, message] of cases) {
  t0(`bad input: ${name}`, async (t) => {
    const sb = sandbox(t);
    fs.writeFileSync(path.join(sb.dir, 'file'), '');
    const r = await runIn(sb, args(sb.dir));
    t.is(r.code, 125, r.stderr);
    t.is(r.stdout, '');
    t.is(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    t.regex(r.stderr.trim(), message);
    t.deepEqual(leftovers(sb), []);
  });
}

t0('--help prints the usage and exits 0', async (t) => {
  const sb = sandbox(t);
  const r = await runIn(sb, ['--help']);
  t.is(r.code, 0);
  t.regex(r.stdout, /^usage: layerfs run \[OPTIONS\] --lower A:B:C/);
});
