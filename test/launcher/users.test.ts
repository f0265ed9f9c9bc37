// -u NAME[:GROUP] / UID[:GID] in real containers: looked up in the container's own /etc/passwd
// and /etc/group (never the host's, not even through a symlink the image plants), with docker's
// rules for the primary group, the supplementary groups and HOME. Root only.

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { leftovers, runIn, sandbox, type Sandbox } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot, sh } from './_helpers.ts';

const t0 = isRoot() ? test.serial : test.skip; // serial: each test starts real containers

const PASSWD = `root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
web:x:1001:1001:web server:/srv/web:/bin/sh
`;
const GROUP = `root:x:0:
user:x:1000:
web:x:1001:
audio:x:29:user,web
staff:x:50:web
nogroup:x:65534:
`;

/** A layer on top of the busybox root with these account files (or whatever `make` puts there). */
function accounts(sb: Sandbox, make: (etc: string) => void = (etc) => {
  fs.writeFileSync(path.join(etc, 'passwd'), PASSWD);
  fs.writeFileSync(path.join(etc, 'group'), GROUP);
}): string {
  const layer = fs.mkdtempSync(path.join(sb.dir, 'accounts-'));
  fs.mkdirSync(path.join(layer, 'etc'));
  make(path.join(layer, 'etc'));
  return `${layer}:${rootfs().lower}`;
}

/** Uid, Gid and Groups of CMD as the kernel has them, then its HOME. */
const WHO = 'grep -E "^(Uid|Gid|Groups):" /proc/self/status | tr -s "\\t " " " | sed "s/ $//"; echo "HOME=$HOME"';

async function who(t: ExecutionContext, sb: Sandbox, lower: string, opts: string[]): Promise<string> {
  const r = await runIn(sb, ['--lower', lower, ...opts, '--', '/bin/sh', '-c', WHO]);
  t.is(r.code, 0, `${opts.join(' ')}: ${r.stderr}`);
  t.is(r.stderr, '');
  return r.stdout;
}

const ids = (uid: number, gid: number, groups: string, home: string): string =>
  `Uid: ${uid} ${uid} ${uid} ${uid}\nGid: ${gid} ${gid} ${gid} ${gid}\nGroups:${groups === '' ? '' : ` ${groups}`}\nHOME=${home}\n`;

t0('-u nobody: the uid, gid, groups and HOME of its passwd entry', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'id -u; id -g; id -G; echo $HOME; id -un', ['-u', 'nobody']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '65534\n65534\n65534\n/nonexistent\nnobody\n');
  t.is(await who(t, sb, rootfs().lower, ['-u', 'nobody']), ids(65534, 65534, '65534', '/nonexistent'));
});

t0('supplementary groups: the groups /etc/group lists the user in, only without an explicit group', async (t) => {
  const sb = sandbox(t);
  const lower = accounts(sb);
  // By name or by a uid that has an entry: the entry's gid and the groups naming "web".
  t.is(await who(t, sb, lower, ['-u', 'web']), ids(1001, 1001, '29 50 1001', '/srv/web'));
  t.is(await who(t, sb, lower, ['-u', '1001']), ids(1001, 1001, '29 50 1001', '/srv/web'));
  t.is(await who(t, sb, lower, ['-u', 'user']), ids(1000, 1000, '29 1000', '/home/user'));
  // NAME:GROUP, UID:GROUP, NAME:GID: that group only (docker's rule), HOME still the entry's.
  t.is(await who(t, sb, lower, ['-u', 'web:staff']), ids(1001, 50, '50', '/srv/web'));
  t.is(await who(t, sb, lower, ['-u', '1001:audio']), ids(1001, 29, '29', '/srv/web'));
  t.is(await who(t, sb, lower, ['-u', 'web:7777']), ids(1001, 7777, '7777', '/srv/web'), 'a gid need not be in /etc/group');
  // Root by default: its groups too (none listed here), HOME from its entry.
  t.is(await who(t, sb, lower, []), ids(0, 0, '0', '/root'));
  // -e HOME wins over the entry's.
  const home = await runIn(sb, ['--lower', lower, '-u', 'web', '-e', 'HOME=/elsewhere', '--', '/bin/sh', '-c', 'echo $HOME; id']);
  t.is(home.stdout, '/elsewhere\nuid=1001(web) gid=1001(web) groups=29(audio),50(staff),1001(web)\n');
});

t0('-u UID without a passwd entry: gid 0, no supplementary groups, HOME /', async (t) => {
  const sb = sandbox(t);
  const lower = accounts(sb);
  t.is(await who(t, sb, lower, ['-u', '4242']), ids(4242, 0, '0', '/'));
  t.is(await who(t, sb, lower, ['-u', '4242:4343']), ids(4242, 4343, '4343', '/'));
  t.is(await who(t, sb, lower, ['-u', '4242:staff']), ids(4242, 50, '50', '/'));
  // No /etc/passwd and /etc/group at all: numbers still work.
  const bare = accounts(sb, (etc) => {
    fs.writeFileSync(path.join(etc, '.wh.passwd'), '');
    fs.writeFileSync(path.join(etc, '.wh.group'), '');
  });
  t.is(await who(t, sb, bare, ['-u', '1000']), ids(1000, 0, '0', '/'));
  t.is(await who(t, sb, bare, []), ids(0, 0, '0', '/'));
});

t0('an unknown user or group: docker\'s line, exit status 125, nothing started or left', async (t) => {
  const sb = sandbox(t);
  const lower = accounts(sb);
  const cases: [string, string][] = [
    ['ghost', 'layerfs run: unable to find user ghost: no matching entries in passwd file'],
    ['ghost:staff', 'layerfs run: unable to find user ghost: no matching entries in passwd file'],
    ['web:ghosts', 'layerfs run: unable to find group ghosts: no matching entries in group file'],
    ['1001:ghosts', 'layerfs run: unable to find group ghosts: no matching entries in group file'],
  ];
  for (const [user, line] of cases) {
    const r = await runIn(sb, ['--lower', lower, '-u', user, '-v', `${sb.dir}:/host`, '--', '/bin/sh', '-c', 'touch /host/ran']);
    t.is(r.code, 125, user);
    t.is(r.stderr, `${line}\n`, user);
    t.false(fs.existsSync(path.join(sb.dir, 'ran')), `${user}: nothing ran`);
    t.deepEqual(leftovers(sb), [], `${user}: nothing left`);
  }
});

t0('account files are read inside the root: a symlink to a host path resolves in the container, never on the host', async (t) => {
  const sb = sandbox(t);
  // Files that exist only on the host, at absolute paths the image's symlinks name.
  const host = path.join(sb.dir, 'host-only');
  fs.mkdirSync(host);
  fs.writeFileSync(path.join(host, 'passwd'), 'hostuser:x:4242:4343:host:/hosthome:/bin/sh\n');
  fs.writeFileSync(path.join(host, 'group'), 'hostgroup:x:4343:hostuser\n');
  const lower = accounts(sb, (etc) => {
    fs.symlinkSync(path.join(host, 'passwd'), path.join(etc, 'passwd'));
    fs.symlinkSync(`../../../../../../../../..${host}/group`, path.join(etc, 'group'));
  });
  for (const [user, line] of [
    ['hostuser', 'layerfs run: unable to find user hostuser: no matching entries in passwd file'],
    ['0:hostgroup', 'layerfs run: unable to find group hostgroup: no matching entries in group file'],
  ]) {
    const r = await runIn(sb, ['--lower', lower, '-u', user, '--', 'true']);
    t.is(r.code, 125, user);
    t.is(r.stderr, `${line}\n`, user);
  }
  t.is(await who(t, sb, lower, ['-u', '4242']), ids(4242, 0, '0', '/'), 'not the host entry\'s gid and HOME');
  // The same symlinks with the files present at those paths inside the root: they are used.
  const inRoot = fs.mkdtempSync(path.join(sb.dir, 'in-root-'));
  fs.mkdirSync(path.join(inRoot, host), { recursive: true });
  fs.writeFileSync(path.join(inRoot, host, 'passwd'), 'rootuser:x:4242:77:in root:/inroot:/bin/sh\n');
  fs.writeFileSync(path.join(inRoot, host, 'group'), 'rootgroup:x:78:rootuser\n');
  const both = `${inRoot}:${lower}`;
  t.is(await who(t, sb, both, ['-u', 'rootuser']), ids(4242, 77, '77 78', '/inroot'));
  t.is(await who(t, sb, both, ['-u', '4242:rootgroup']), ids(4242, 78, '78', '/inroot'));
  const hostuser = await runIn(sb, ['--lower', both, '-u', 'hostuser', '--', 'true']);
  t.is(hostuser.code, 125);
});

t0('an /etc/passwd that is not a regular file is refused, never waited on', async (t) => {
  const sb = sandbox(t);
  const lower = accounts(sb, (etc) => execFileSync('mkfifo', [path.join(etc, 'passwd')]));
  const r = await runIn(sb, ['--lower', lower, '-u', 'web', '--', 'true'], { timeoutMs: 30_000 });
  t.false(r.timedOut);
  t.is(r.code, 125);
  t.is(r.stderr, "layerfs run: the container's /etc/passwd is not a regular file\n");
});

t0('with --userns: the user and its groups inside the container\'s id range', async (t) => {
  const sb = sandbox(t);
  const lower = accounts(sb);
  t.is(await who(t, sb, lower, ['--userns', '-u', 'web']), ids(1001, 1001, '29 50 1001', '/srv/web'));
  const r = await runIn(sb, ['--lower', lower, '--uidmap', '0:200000:1000', '-u', 'user', '--', 'true']);
  t.is(r.code, 125);
  t.is(r.stderr, 'layerfs run: user 1000:1000 is not mapped in the container\'s user namespace\n');
  const g = await runIn(sb, ['--lower', lower, '--uidmap', '0:200000:1002', '-u', 'web', '--', 'true']);
  t.is(g.code, 0, g.stderr);
  const sup = await runIn(sb, ['--lower', lower, '--uidmap', '0:200000:1002', '--gidmap', '0:200000:40', '--gidmap', '1000:201000:2', '-u', 'web', '--', 'true']);
  t.is(sup.code, 125);
  t.is(sup.stderr, 'layerfs run: -u web: group 50 (/etc/group lists the user in it) is not mapped in the container\'s user namespace\n');
});
