// `layerfs explain [--json] MOUNTPOINT PATH`: which layer serves PATH and why, from the layer
// directories of a running mount (its state file names them), through the union core's own
// lookup (src/union/explain.ts). Exit status: 0 PATH exists, 1 PATH does not exist (and why),
// 2 bad arguments, 3 MOUNTPOINT is not a layerfs mount, 4 the layers could not be inspected.
//
// The JSON (--json) is a stable shape, version 1:
//   { "version": 1, "mountpoint": "/abs/mnt", "path": "/etc/motd",
//     ...Level of the path itself,
//     "along": [Level of each ancestor, "/" first, the path itself excluded],
//     "text": ["the plain-words explanation, line by line"] }
// Level:
//   { "path", "exists": bool, "type": "file"|"dir"|"symlink"|"other"|null,
//     "layer": name of the serving layer | null, "copiedUp": bool, "merged": bool,
//     "mergedFrom": [layer names, top first; directories only],
//     "missing": null | { "why": "whiteout"|"opaque"|"shadow"|"not-a-directory"|"nowhere"|"reserved",
//                         "layer": name | null, "path": where the cause is, "type"?: for not-a-directory },
//     "layers": [{ "name": "upper"|"lower1"…, "dir", "has": "file"|"dir"|"symlink"|"other"|"whiteout"|"nothing",
//                  "verdict": "serves"|"merged"|"shadowed"|"whiteout"|"hidden"|"absent",
//                  "by": null | { "layer", "path", "why": "whiteout"|"opaque"|"shadow"|"reserved" },
//                  "whiteout": null | "chardev"|"oci"|"xattr", "opaque": bool,
//                  "blockedAt": null | { "path", "has" }, "target": symlink target | null }] }

import * as path from 'node:path';
import {
  Layer, Resolver, WhiteoutFormat, checkPath, explainPath, fromText, layerName, toText, type Cause, type LayerVerdict, type Level,
} from './union/index.ts';
import { mountAt } from './mountinfo.ts';
import { resolveMountpoint, UserError } from './engine/mount.ts';
import { readState, type MountState } from './engine/state.ts';

export function fail(msg: string, status: number): never {
  throw new UserError(msg, status);
}

/** The state of the layerfs mount at `arg` (exit 3 when it is not one). */
export function mountState(cmd: string, arg: string): { mnt: string; state: MountState } {
  const mnt = resolveMountpoint(arg);
  const m = mountAt(mnt);
  if (!m) fail(`layerfs ${cmd}: '${arg}' is not a layerfs mount (nothing is mounted there)`, 3);
  if (m.fstype !== 'fuse.layerfs') fail(`layerfs ${cmd}: '${arg}' is not a layerfs mount (it is ${m.fstype})`, 3);
  const state = readState(mnt);
  if (!state) fail(`layerfs ${cmd}: '${arg}' has no layerfs state file (mounted by another user, or the daemon is gone)`, 3);
  return { mnt, state };
}

/**
 * The union path PATH names: a path under MOUNTPOINT (absolute, or relative to a current
 * directory inside the mount) loses that prefix; any other path is taken relative to the
 * mount's root (`/etc/x` and `etc/x` both mean /etc/x). Lexical only: nothing is followed.
 */
export function unionPathOf(mnt: string, arg: string): string {
  const strip = (p: string): string | null => (p === mnt ? '/' : p.startsWith(mnt + '/') ? p.slice(mnt.length) : null);
  let p: string;
  if (arg.startsWith('/')) p = strip(path.posix.normalize(arg)) ?? arg;
  else p = strip(path.resolve(arg)) ?? '/' + arg;
  p = path.posix.normalize(p);
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

function layersOf(state: MountState): Layer[] {
  const layers: Layer[] = [];
  if (state.upperdir) layers.push(new Layer(state.upperdir, 0, true));
  for (const d of state.lowerdirs) layers.push(new Layer(d, layers.length, false));
  return layers;
}

// ------------------------------------------------------------------------------- JSON

interface Named {
  layers: Layer[];
  name(i: number | undefined): string | null;
}

function levelJson(l: Level, n: Named) {
  const e = l.entry;
  const upperServes = !!e && n.layers[e.layer]!.isUpper;
  return {
    path: toText(l.path),
    exists: !!e,
    type: e?.type ?? null,
    layer: e ? n.name(e.layer) : null,
    copiedUp: upperServes && l.layers.some((v) => !n.layers[v.layer]!.isUpper && (v.verdict === 'shadowed' || v.verdict === 'merged') && v.has === e!.type),
    merged: !!e && e.type === 'dir' && e.dirLayers.length > 1,
    mergedFrom: e && e.type === 'dir' ? e.dirLayers.map((i) => n.name(i)) : [],
    missing: l.missing
      ? {
          why: l.missing.why,
          layer: n.name(l.missing.layer),
          path: toText(l.missing.path),
          ...(l.missing.type ? { type: l.missing.type } : {}),
        }
      : null,
    layers: l.layers.map((v) => ({
      name: n.name(v.layer),
      dir: toText(n.layers[v.layer]!.root),
      has: v.has,
      verdict: v.verdict,
      by: v.by ? { layer: n.name(v.by.layer), path: toText(v.by.path), why: v.by.why } : null,
      whiteout: v.whiteout ?? null,
      opaque: !!v.opaque,
      blockedAt: v.blockedAt ? { path: toText(v.blockedAt.path), has: v.blockedAt.has } : null,
      target: v.target !== undefined ? toText(v.target) : null,
    })),
  };
}

export type LevelJson = ReturnType<typeof levelJson>;

// ------------------------------------------------------------------------------- plain words

const A: Record<string, string> = {
  file: 'a file', dir: 'a directory', symlink: 'a symbolic link', other: 'a special file',
  whiteout: 'a whiteout', nothing: 'nothing',
};
const WH: Record<string, string> = { chardev: 'character device 0/0', oci: 'OCI .wh. file', xattr: 'xattr whiteout' };

function list(names: string[]): string {
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
}

function causeWords(c: LevelJson['missing'] | NonNullable<LevelJson['layers'][number]['by']>, here: string): string {
  const at = c!.path === here ? '' : ` ${c!.path}`;
  switch (c!.why) {
    case 'whiteout':
      return c!.path === here ? `a whiteout in ${c!.layer}` : `a whiteout for ${c!.path} in ${c!.layer}`;
    case 'opaque':
      return `the opaque directory${at} in ${c!.layer}`;
    case 'shadow':
      return `the non-directory${at} in ${c!.layer}`;
    case 'reserved':
      return 'the .wh. prefix (names of whiteout markers are never shown)';
    default:
      return String(c!.why);
  }
}

function layerLine(v: LevelJson['layers'][number], l: LevelJson): string {
  let what = A[v.has]!;
  if (v.has === 'whiteout' && v.whiteout) what += ` (${WH[v.whiteout]})`;
  if (v.has === 'dir' && v.opaque) what += ', opaque';
  if (v.has === 'symlink' && v.target !== null) what += ` to ${v.target} (not followed)`;
  let why = '';
  switch (v.verdict) {
    case 'serves':
      why = 'what you see';
      break;
    case 'merged':
      why = `merged into ${l.layer}'s`;
      break;
    case 'shadowed':
      why = `beneath ${v.by!.layer}'s ${v.by!.path === l.path && l.type && v.by!.layer === l.layer ? A[l.type]!.replace(/^an? /, '') : 'object'}`;
      break;
    case 'whiteout':
      why = 'hides this name in the layers below';
      break;
    case 'hidden':
      why = `hidden by ${causeWords(v.by, l.path)}`;
      break;
    case 'absent':
      if (v.blockedAt) {
        why = `${v.blockedAt.path} is ${A[v.blockedAt.has]} in this layer${v.blockedAt.has === 'symlink' ? ', not followed' : ''}`;
      }
      break;
  }
  return `  ${String(v.name).padEnd(7)} ${v.verdict.padEnd(9)} ${what}${why ? ` - ${why}` : ''}`;
}

function headline(l: LevelJson): string {
  if (!l.exists) {
    const m = l.missing!;
    const others = l.layers.filter((v) => v.verdict === 'hidden').map((v) => v.name!);
    const hides = others.length ? `, which hides ${list(others.map((n) => `${n}'s`))} copy` : '';
    switch (m.why) {
      case 'nowhere':
        return `${l.path} does not exist: no layer has it.`;
      case 'not-a-directory':
        return `${l.path} does not exist: ${m.path} is ${A[m.type!]} (from ${m.layer}), not a directory.`;
      case 'reserved':
        return `${l.path} does not exist: names starting with .wh. are whiteout markers and never shown.`;
      case 'whiteout':
        return `${l.path} does not exist: it is hidden by ${causeWords(m, l.path)}${m.path === l.path ? hides : ''}.`;
      default:
        return `${l.path} does not exist: it is hidden by ${causeWords(m, l.path)}${hides}.`;
    }
  }
  if (l.type === 'dir') {
    if (l.path === '/') return `/ is the root directory, merged from ${list(l.mergedFrom as string[])}.`;
    const from = l.merged ? `a merged directory: ${list(l.mergedFrom as string[])} contribute` : `a directory from ${l.layer} alone`;
    const last = l.layers.find((v) => v.name === (l.mergedFrom as string[]).at(-1));
    const hidden = l.layers.filter((v) => v.verdict === 'hidden' && v.by?.why === 'opaque' && v.by.path === l.path).map((v) => `${v.name}'s`);
    let s = `${l.path} is ${from}${l.copiedUp ? ' (copied up: it is in the upper and in a lower)' : ''}`;
    if (last?.opaque) s += `; it is opaque in ${last.name}${hidden.length ? `, which hides ${list(hidden)} directory` : ''}`;
    return s + '.';
  }
  const shadowed = l.layers.filter((v) => v.verdict === 'shadowed').map((v) => v.name!);
  let s = `${l.path} is ${A[l.type!]} from ${l.layer}`;
  if (l.copiedUp) s += `, copied up: ${list(shadowed)} ${shadowed.length > 1 ? 'have' : 'has'} it too, and the upper's copy is what you see`;
  else if (shadowed.length) s += `; it shadows ${list(shadowed.map((n) => `${n}'s`))}`;
  return s + '.';
}

function render(top: LevelJson, along: LevelJson[]): string[] {
  const out = [headline(top), ...top.layers.map((v) => layerLine(v, top))];
  const notable = along.filter((a) => a.path !== '/' && (a.merged || a.layers.some((v) => v.opaque || v.verdict === 'whiteout' || v.verdict === 'hidden' || v.verdict === 'shadowed' || (v.has === 'nothing' && v.blockedAt))));
  if (notable.length) {
    out.push('Along the path:');
    for (const a of notable) {
      const marks: string[] = [];
      for (const v of a.layers) {
        if (v.opaque) marks.push(`opaque in ${v.name}`);
        if (v.verdict === 'whiteout') marks.push(`whiteout in ${v.name}`);
        if (v.verdict === 'hidden' || v.verdict === 'shadowed') marks.push(`${v.name}'s is ${v.verdict}`);
      }
      const what = !a.exists ? 'missing' : a.type === 'dir' ? (a.merged ? `merged from ${list(a.mergedFrom as string[])}` : `directory from ${a.layer}`) : `${A[a.type!]} from ${a.layer}`;
      out.push(`  ${a.path}: ${what}${marks.length ? `; ${marks.join(', ')}` : ''}`);
    }
  }
  out.push(`Layers: ${top.layers.map((v) => `${v.name} ${v.dir}`).join(', ')}`);
  return out;
}

// ------------------------------------------------------------------------------- command

/**
 * `layerfs explain [--json] MOUNTPOINT PATH`, its arguments parsed by the command table
 * (src/cli/commands.ts, which also holds its usage text).
 */
export async function cmdExplain(json: boolean, mountpoint: string, pathArg: string): Promise<number> {
  const { mnt, state } = mountState('explain', mountpoint);
  const upath = fromText(unionPathOf(mnt, pathArg));
  try {
    checkPath(upath);
  } catch {
    fail(`layerfs explain: bad path '${pathArg}'`, 2);
  }
  const layers = layersOf(state);
  const n: Named = { layers, name: (i) => (i === undefined ? null : layerName(layers, i)) };
  let levels: LevelJson[];
  try {
    const x = explainPath(new Resolver(layers, new WhiteoutFormat(!!state.userxattr), 1000), upath);
    levels = x.levels.map((l) => levelJson(l, n));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    fail(`layerfs explain: cannot inspect the layers of ${mnt}: ${err.message.split('\n')[0]}`, 4);
  }
  const top = levels.at(-1)!;
  const along = levels.slice(0, -1);
  const text = render(top, along);
  if (json) {
    process.stdout.write(JSON.stringify({ version: 1, mountpoint: mnt, ...top, along, text }, null, 2) + '\n');
  } else {
    process.stdout.write(text.join('\n') + '\n');
  }
  return top.exists ? 0 : 1;
}

export type { Cause, LayerVerdict };
