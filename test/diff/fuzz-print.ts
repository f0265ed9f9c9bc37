// The fuzz harness's printing of a reproducer: as a scenario literal for scenarios.ts and as a
// shell script. Part of fuzz.ts.

import { repoRoot } from '../helpers/mounts.ts';
import { describeOp, op, type Op } from './engine.ts';
import { batchIdString, entriesToTrees } from './fuzz-gen.ts';
import type { Reproducer } from './fuzz-run.ts';
import type { Node, Tree } from './layers.ts';

// ---------------------------------------------------------------------------
// printing a reproducer

function octal(n: number): string {
  return '0o' + n.toString(8);
}

function tsOpts(o: object, skip: string[]): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
    if (skip.includes(k) || v === undefined) continue;
    if (k === 'mode' && typeof v === 'number') parts.push(`mode: ${octal(v)}`);
    else parts.push(`${/^[a-z]\w*$/i.test(k) ? k : JSON.stringify(k)}: ${JSON.stringify(v)}`);
  }
  return parts.length ? `{ ${parts.join(', ')} }` : '';
}

/** A Tree as TypeScript using the constructors of layers.ts. */
export function tsTree(t: Tree, indent = ''): string {
  const inner = indent + '  ';
  const items = Object.entries(t).map(([name, n]) => `${inner}${/^[a-z_]\w*$/i.test(name) ? name : JSON.stringify(name)}: ${tsNode(n, inner)},`);
  return items.length ? `{\n${items.join('\n')}\n${indent}}` : '{}';
}

function tsNode(n: Node, indent: string): string {
  const args = (...xs: string[]) => xs.filter(Boolean).join(', ');
  switch (n.type) {
    case 'file':
      return `file(${args(JSON.stringify(typeof n.content === 'string' ? n.content : (n.content ?? '').toString()), tsOpts(n, ['type', 'content']))})`;
    case 'dir': {
      const kids = tsTree(n.children ?? {}, indent);
      if (n.opaque) return `opaqueDir(${args(JSON.stringify(n.opaque), kids, tsOpts(n, ['type', 'children', 'opaque']))})`;
      return `dir(${args(kids, tsOpts(n, ['type', 'children']))})`;
    }
    case 'symlink':
      return `symlink(${args(JSON.stringify(n.target), tsOpts(n, ['type', 'target']))})`;
    case 'fifo':
      return `fifo(${tsOpts(n, ['type'])})`;
    case 'hardlink':
      return `hardlink(${JSON.stringify(n.to)})`;
    case 'whiteout':
      return `whiteout(${JSON.stringify(n.format)})`;
    case 'chardev':
    case 'blockdev':
      return `${n.type}(${args(String(n.major), String(n.minor), tsOpts(n, ['type', 'major', 'minor']))})`;
  }
}

function tsOp(o: Op): string {
  const m = (mode: number | undefined) => (mode === undefined ? '' : `, ${octal(mode)}`);
  switch (o.op) {
    case 'writeFile':
      return `op.writeFile(${JSON.stringify(o.path)}, ${JSON.stringify(o.content)}${m(o.mode)})`;
    case 'mkdir':
      return `op.mkdir(${JSON.stringify(o.path)}${m(o.mode)})`;
    case 'mkfifo':
      return `op.mkfifo(${JSON.stringify(o.path)}${m(o.mode)})`;
    case 'chmod':
      return `op.chmod(${JSON.stringify(o.path)}, ${octal(o.mode)})`;
    default: {
      // Every other constructor takes the op's fields in declaration order.
      const { op: name, ...rest } = o;
      return `op.${name}(${Object.values(rest).filter((v) => v !== undefined).map((v) => JSON.stringify(v)).join(', ')})`;
    }
  }
}

/** The reproducer as a scenario literal for test/diff/scenarios.ts. */
export function scenarioLiteral(r: Reproducer): string {
  const trees = entriesToTrees(r.lowers, [r.dir], r.entries);
  const lines = [
    `  {`,
    `    name: ${JSON.stringify(`fuzz: ${batchIdString(r.id)} ${r.dir}`)},`,
    `    layers: {`,
    `      lowers: [`,
    ...trees.map((t) => `        ${tsTree(t, '        ')},`),
    `      ],`,
    `    },`,
    `    ops: [`,
    ...r.ops.map((o) => `      ${tsOp(o)},`),
    `    ],`,
    `  },`,
  ];
  return lines.join('\n');
}

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function shBuild(t: Tree, dir: string, format: 'kernel' | 'layerfs', out: string[], links: string[]): void {
  let xw = false;
  for (const [name, n] of Object.entries(t)) {
    const p = `${dir}/${name}`;
    const own = (x: { uid?: number; gid?: number }, h = '') => {
      if (x.uid !== undefined || x.gid !== undefined) out.push(`chown ${h}${x.uid ?? 0}:${x.gid ?? 0} ${sq(p)}`);
    };
    switch (n.type) {
      case 'file':
        out.push(`printf %s ${sq(typeof n.content === 'string' ? n.content : '')} > ${sq(p)}`);
        own(n);
        out.push(`chmod ${(n.mode ?? 0o644).toString(8)} ${sq(p)}`);
        for (const [k, v] of Object.entries(n.xattrs ?? {})) out.push(`setfattr -h -n ${sq(k)} -v ${sq(v)} ${sq(p)}`);
        break;
      case 'dir': {
        out.push(`mkdir ${sq(p)}`);
        shBuild(n.children ?? {}, p, format, out, links);
        if (n.opaque === 'oci' && format === 'layerfs') out.push(`: > ${sq(`${p}/.wh..wh..opq`)}`);
        else if (n.opaque === 'user') out.push(`setfattr -n user.overlay.opaque -v y ${sq(p)}`);
        else if (n.opaque) out.push(`setfattr -n trusted.overlay.opaque -v y ${sq(p)}`);
        for (const [k, v] of Object.entries(n.xattrs ?? {})) out.push(`setfattr -n ${sq(k)} -v ${sq(v)} ${sq(p)}`);
        own(n);
        out.push(`chmod ${(n.mode ?? 0o755).toString(8)} ${sq(p)}`);
        break;
      }
      case 'symlink':
        out.push(`ln -s ${sq(n.target)} ${sq(p)}`);
        own(n, '-h ');
        break;
      case 'fifo':
        out.push(`mkfifo -m ${(n.mode ?? 0o644).toString(8)} ${sq(p)}`);
        own(n);
        break;
      case 'chardev':
      case 'blockdev':
        out.push(`mknod -m ${(n.mode ?? 0o600).toString(8)} ${sq(p)} ${n.type === 'chardev' ? 'c' : 'b'} ${n.major} ${n.minor}`);
        own(n);
        break;
      case 'hardlink':
        links.push(`ln "$L"/${sq(n.to)} ${sq(p)}`);
        break;
      case 'whiteout':
        if (n.format === 'oci' && format === 'layerfs') out.push(`: > ${sq(`${dir}/.wh.${name}`)}`);
        else if (n.format === 'xattr' || n.format === 'user-xattr') {
          const pre = n.format === 'xattr' ? 'trusted' : 'user';
          out.push(`: > ${sq(p)}`, `setfattr -n ${pre}.overlay.whiteout -v y ${sq(p)}`);
          if (!xw) out.push(`setfattr -n ${pre}.overlay.opaque -v x ${sq(dir)}`);
          xw = true;
        } else out.push(`mknod ${sq(p)} c 0 0`);
        break;
    }
  }
}

function shOp(o: Op): string {
  const perl = (code: string, ...args: string[]) => `perl -e ${sq(code)} ${args.map(sq).join(' ')}`;
  switch (o.op) {
    case 'writeFile':
      return perl('open(F,">",$ARGV[0]) or die "$!\\n"; print F $ARGV[1]; close F or die "$!\\n"', o.path, o.content);
    case 'appendFile':
      return perl('open(F,">>",$ARGV[0]) or die "$!\\n"; print F $ARGV[1]; close F or die "$!\\n"', o.path, o.content);
    case 'writeAt':
      return perl('open(F,"+<",$ARGV[0]) or die "$!\\n"; seek(F,$ARGV[1],0); print F $ARGV[2]; close F or die "$!\\n"', o.path, String(o.offset), o.content);
    case 'truncate':
      return perl('truncate($ARGV[0],$ARGV[1]) or die "$!\\n"', o.path, String(o.size));
    case 'readFile':
      return `cat ${sq(o.path)}`;
    case 'readdir':
      return perl('opendir(D,$ARGV[0]) or die "$!\\n"; print join(" ", sort grep {!/^\\.\\.?$/} readdir D), "\\n"', o.path);
    case 'stat':
      return `stat -L -c '%F %a %u:%g %s %h' ${sq(o.path)}`;
    case 'lstat':
      return `stat -c '%F %a %u:%g %s %h' ${sq(o.path)}`;
    case 'mkdir':
      return perl('mkdir($ARGV[0], oct($ARGV[1])) or die "$!\\n"', o.path, (o.mode ?? 0o777).toString(8));
    case 'rmdir':
      return perl('rmdir($ARGV[0]) or die "$!\\n"', o.path);
    case 'unlink':
      return perl('unlink($ARGV[0]) or die "$!\\n"', o.path);
    case 'rename':
      return perl('rename($ARGV[0],$ARGV[1]) or die "$!\\n"', o.from, o.to);
    case 'symlink':
      return perl('symlink($ARGV[0],$ARGV[1]) or die "$!\\n"', o.target, o.path);
    case 'readlink':
      return `readlink ${sq(o.path)}`;
    case 'link':
      return perl('link($ARGV[0],$ARGV[1]) or die "$!\\n"', o.from, o.to);
    case 'chmod':
      return perl('chmod(oct($ARGV[1]),$ARGV[0]) or die "$!\\n"', o.path, o.mode.toString(8));
    case 'chown':
      return perl('chown($ARGV[1],$ARGV[2],$ARGV[0]) or die "$!\\n"', o.path, String(o.uid), String(o.gid));
    case 'lchown':
      return `chown -h ${o.uid}:${o.gid} ${sq(o.path)}`;
    case 'utimes':
      return perl('utime($ARGV[1],$ARGV[2],$ARGV[0]) or die "$!\\n"', o.path, String(o.atime), String(o.mtime));
    case 'mkfifo':
      return `mkfifo ${o.mode === undefined ? '' : `-m ${o.mode.toString(8)} `}${sq(o.path)}`;
    case 'mknod':
      return `mknod -m ${(o.mode ?? 0o600).toString(8)} ${sq(o.path)} ${o.kind === 'chr' ? 'c' : 'b'} ${o.major} ${o.minor}`;
    case 'setxattr':
      return `setfattr -n ${sq(o.name)} -v ${sq(o.value === '' ? '""' : o.value)} ${sq(o.path)}`;
    case 'getxattr':
      return `getfattr --only-values -n ${sq(o.name)} ${sq(o.path)}`;
    case 'removexattr':
      return `setfattr -x ${sq(o.name)} ${sq(o.path)}`;
    case 'listxattr':
      return `getfattr -m '^user\\.' ${sq(o.path)}`;
    case 'rmrf':
      return `rm -rf ${sq(o.path)}`;
    case 'mv':
      return `mv ${sq(o.from)} ${sq(o.to)}`;
    case 'cpa':
      return `cp -a ${sq(o.from)} ${sq(o.to)}`;
    case 'readAt':
      return `dd if=${sq(o.path)} bs=1 skip=${o.offset} count=${o.length} status=none`;
    case 'checksum':
      return `sha256sum < ${sq(o.path)}`;
    case 'allocated':
      return `du -B1 ${sq(o.path)}`;
    case 'rename2':
      return `: rename2 ${o.flags} is not expressible in sh: ${sq(describeOp(o))}`;
    case 'lsattr':
      return `lsattr -d ${sq(o.path)}`;
    case 'chattr':
      return `chattr ${sq(o.mode)} ${sq(o.path)}`;
  }
}

/** The reproducer as a self-contained shell script: `sh repro.sh kernel|layerfs` (as root). */
export function shellScript(r: Reproducer): string {
  const trees = entriesToTrees(r.lowers, [r.dir], r.entries);
  const build = (format: 'kernel' | 'layerfs') => {
    const out: string[] = [];
    trees.forEach((t, i) => {
      const links: string[] = [];
      out.push(`L="$D/lower${i}"; mkdir "$L"; cd "$L"`);
      shBuild(t, '.', format, out, links);
      out.push(...links);
    });
    return out.map((l) => `  ${l}`).join('\n');
  };
  const lowerdir = Array.from({ length: r.lowers }, (_, i) => `$D/lower${i}`).join(':');
  return `#!/bin/sh
# fuzz reproducer: ${batchIdString(r.id)} ${r.dir}
# usage (as root): sh THIS kernel   or   sh THIS layerfs   — then diff the two outputs.
set -u
T=\${1:-kernel}
LAYERFS=\${LAYERFS:-${repoRoot}/bin/layerfs}
D=$(mktemp -d /tmp/layerfs-repro-XXXXXX)
mkdir "$D/upper" "$D/work" "$D/mnt"
if [ "$T" = kernel ]; then
${build('kernel')}
else
${build('layerfs')}
fi
cd /
if [ "$T" = kernel ]; then
  mount -t overlay overlay -o lowerdir=${lowerdir},upperdir=$D/upper,workdir=$D/work "$D/mnt" || exit 1
else
  "$LAYERFS" mount -o lowerdir=${lowerdir},upperdir=$D/upper,workdir=$D/work "$D/mnt" || exit 1
fi
cd "$D/mnt"
n=0
r() { if out=$("$@" 2>&1); then echo "#$n ok $out"; else echo "#$n ERR $out"; fi; n=$((n+1)); }
${r.ops.map((o) => `r ${shOp(o)}    # ${describeOp(o)}`).join('\n')}
cd /
if [ "$T" = kernel ]; then umount "$D/mnt"; else "$LAYERFS" umount "$D/mnt"; fi
echo "== upper"
(cd "$D/upper" && find . -mindepth 1 | sort | while read -r p; do stat -c '%n %F %a %u:%g %s %t:%T' "$p"; done; getfattr -R -h -d -m - . 2>/dev/null | grep -v '^trusted.overlay.origin\\|^trusted.overlay.impure\\|^trusted.overlay.uuid')
rm -rf "$D"
`;
}

export function formatReproducer(r: Reproducer): string {
  const head = r.original.length
    ? `minimal reproducer (${r.ops.length} ops, ${r.entries.length} layer entries; ${r.trials} trials, ${(r.ms / 1000).toFixed(0)} s${r.partial ? ', stopped at the time budget' : ''})`
    : 'the sequence does NOT diverge when run alone (an interaction within the batch, or a flaky result); the batch seed reproduces it';
  return [
    `=== fuzz divergence: ${batchIdString(r.id)} ${r.dir}`,
    `replay: npx tsx scripts/fuzz.ts --replay ${r.id.seed}:${r.id.batch}:${r.dir.slice(1)} --seqs ${r.id.sequences} --len ${r.id.opsPerSequence}`,
    head,
    'divergences:',
    ...r.divergences.map((d) => `  ${d}`),
    '--- scenario literal (paste into test/diff/scenarios.ts):',
    scenarioLiteral(r),
    '--- shell script (sh repro.sh kernel; sh repro.sh layerfs):',
    shellScript(r),
  ].join('\n');
}
