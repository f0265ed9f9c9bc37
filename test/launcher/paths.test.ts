// Container paths resolved on the host: symlinks of the image are followed inside its root,
// '..' never climbs out of it.

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeInRoot, PathError, resolveInRoot } from '../../src/launcher/paths.ts';
import { makeTmp } from '../helpers/mounts.ts';

function tree(t: Parameters<typeof makeTmp>[0]): string {
  const root = path.join(makeTmp(t), 'root');
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(root, 'srv/data'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc/file'), '');
  fs.symlinkSync('/etc', path.join(root, 'abs'));
  fs.symlinkSync('../../../../../../../etc', path.join(root, 'srv/climb'));
  fs.symlinkSync('data', path.join(root, 'srv/rel'));
  fs.symlinkSync('/', path.join(root, 'top'));
  fs.symlinkSync('loop2', path.join(root, 'loop1'));
  fs.symlinkSync('loop1', path.join(root, 'loop2'));
  return root;
}

test('resolveInRoot follows symlinks inside the root only', (t) => {
  const root = tree(t);
  t.is(resolveInRoot(root, '/'), root);
  t.is(resolveInRoot(root, '/etc/file'), `${root}/etc/file`);
  t.is(resolveInRoot(root, '/abs/x'), `${root}/etc/x`, 'an absolute link is taken from the container root');
  t.is(resolveInRoot(root, '/srv/climb/x'), `${root}/etc/x`, "'..' stops at the container root");
  t.is(resolveInRoot(root, '/srv/rel/x'), `${root}/srv/data/x`);
  t.is(resolveInRoot(root, '/top/top/abs'), `${root}/etc`);
  t.is(resolveInRoot(root, '/new/deeper/x'), `${root}/new/deeper/x`);
  t.throws(() => resolveInRoot(root, '/loop1/x'), { instanceOf: PathError, message: /too many levels of symbolic links/ });
  t.throws(() => resolveInRoot(root, '/etc/file/x'), { instanceOf: PathError, message: /'\/etc\/file' is not a directory/ });
});

test('makeInRoot creates directories or a file, never through a link out of the root', (t) => {
  const root = tree(t);
  t.is(makeInRoot(root, '/abs/made/here', false), `${root}/etc/made/here`);
  t.true(fs.statSync(`${root}/etc/made/here`).isDirectory());
  t.is(makeInRoot(root, '/srv/climb/f.conf', true), `${root}/etc/f.conf`);
  t.true(fs.statSync(`${root}/etc/f.conf`).isFile());
  t.is(makeInRoot(root, '/etc', false), `${root}/etc`, 'an existing directory is fine');
  t.throws(() => makeInRoot(root, '/etc', true), { instanceOf: PathError, message: /is a directory in the container, but the volume is a file/ });
  t.false(fs.existsSync('/etc/made'));
});
