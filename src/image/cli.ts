// Command lines of the image commands (wired into src/cli.ts):
//
//   layerfs image import SOURCE [--name NAME]    oci:DIR[:TAG] | docker-archive:FILE[:REF]
//   layerfs image ls
//   layerfs image rm NAME...
//   layerfs image export NAME DIR                 an OCI image layout (skopeo/umoci read it)
//   layerfs diff UPPER [--from IMAGE | --lower A:B] [--userxattr]
//   layerfs commit UPPER [--name NEW] [--from IMAGE] [--userxattr] [-m MESSAGE]
//
// The store is $LAYERFS_STORE (default /var/lib/layerfs). Every error is one line on stderr
// and exit status 1 (2 for bad arguments), with nothing left behind.

import { splitLowerdirs } from '../config.ts';
import { UserError } from '../mount.ts';
import { ImageError } from './oci.ts';
import { humanSize, Store } from './store.ts';

export const IMAGE_USAGE = `usage:
  layerfs image import SOURCE [--name NAME]   SOURCE: oci:DIR[:TAG] or docker-archive:FILE[:REF]
  layerfs image ls
  layerfs image rm NAME...
  layerfs image export NAME DIR               write NAME as an OCI image layout in DIR
  layerfs diff UPPER [--from IMAGE | --lower A:B:C] [--userxattr]
  layerfs commit UPPER [--name NEW] [--from IMAGE] [--userxattr] [-m MESSAGE]
The store is $LAYERFS_STORE (default /var/lib/layerfs).`;

/** Bad arguments: one line, exit status 2. */
export class UsageError extends UserError {
  readonly status = 2;
}

interface Parsed {
  positional: string[];
  values: Map<string, string>;
  flags: Set<string>;
}

function parseArgs(cmd: string, argv: string[], valueOpts: Record<string, string>, flagOpts: string[]): Parsed {
  const out: Parsed = { positional: [], values: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out.positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      const eq = a.startsWith('--') ? a.indexOf('=') : -1;
      const name = eq > 0 ? a.slice(0, eq) : a;
      if (flagOpts.includes(name) && eq < 0) {
        out.flags.add(name);
        continue;
      }
      const key = valueOpts[name];
      if (key !== undefined) {
        const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new UsageError(`layerfs ${cmd}: option '${name}' needs a value`);
        if (out.values.has(key)) throw new UsageError(`layerfs ${cmd}: option '${name}' given twice`);
        out.values.set(key, v);
        continue;
      }
      throw new UsageError(`layerfs ${cmd}: unknown option '${a}'`);
    }
    out.positional.push(a);
  }
  return out;
}

/** Run fn, turning image errors into one-line user errors prefixed with the command. */
async function guarded<T>(cmd: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (e instanceof ImageError) throw new UserError(`layerfs ${cmd}: ${e.message}`);
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS') {
      throw new UserError(`layerfs ${cmd}: ${err.message.split('\n')[0]}${process.getuid?.() !== 0 ? ' (the store needs root, or set LAYERFS_STORE)' : ''}`);
    }
    if (err.code === 'ENOSPC') throw new UserError(`layerfs ${cmd}: no space left on the device of ${Store.fromEnv().root}`);
    throw e;
  }
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c] + 2))).join('').trimEnd()).join('\n') + '\n';
}

async function imageImport(argv: string[]): Promise<number> {
  const a = parseArgs('image import', argv, { '--name': 'name' }, []);
  if (a.positional.length !== 1) throw new UsageError('layerfs image import: needs exactly one SOURCE (oci:DIR[:TAG] or docker-archive:FILE)');
  const { importImage } = await import('./importer.ts');
  const store = Store.fromEnv();
  return guarded('image import', async () => {
    const r = await importImage(store, a.positional[0], {
      name: a.values.get('name'),
      onWait: () => process.stderr.write(`layerfs image import: waiting for another layerfs to release the store lock (${store.root})\n`),
    });
    for (const w of r.warnings) process.stderr.write(`layerfs image import: warning: ${w}\n`);
    const id = r.record.configDigest.slice(7, 19);
    const what = r.replaced && r.replaced.manifestDigest === r.record.manifestDigest ? ' (already stored)' : r.replaced ? ' (replaces the image of that name)' : '';
    process.stdout.write(`${r.record.name} ${id}: ${r.layers} layer${r.layers === 1 ? '' : 's'}, ${r.newLayers} new${what}\n`);
    return 0;
  });
}

async function imageLs(argv: string[]): Promise<number> {
  const a = parseArgs('image ls', argv, {}, ['-q', '--quiet']);
  if (a.positional.length > 0) throw new UsageError('layerfs image ls: takes no arguments');
  const store = Store.fromEnv();
  return guarded('image ls', async () => {
    const recs = store.images();
    if (a.flags.size > 0) {
      for (const r of recs) process.stdout.write(`${r.name}\n`);
      return 0;
    }
    const rows = [['NAME', 'ID', 'LAYERS', 'SIZE', 'CREATED']];
    for (const r of recs) {
      let created = '';
      try {
        const c = JSON.parse(store.readBlob(r.configDigest).toString('utf8')) as { created?: string };
        created = typeof c.created === 'string' ? c.created.replace(/\.[0-9]+Z$/, 'Z') : '';
      } catch {
        created = '?';
      }
      const size = r.layers.reduce((s, l) => s + (store.layerInfo(l.diffID)?.dataSize ?? 0), 0);
      rows.push([r.name, r.configDigest.slice(7, 19), String(r.layers.length), humanSize(size), created]);
    }
    process.stdout.write(table(rows));
    return 0;
  });
}

async function imageRm(argv: string[]): Promise<number> {
  const a = parseArgs('image rm', argv, {}, []);
  if (a.positional.length === 0) throw new UsageError('layerfs image rm: needs at least one image NAME');
  const store = Store.fromEnv();
  return guarded('image rm', async () => {
    // Check all names first: an unknown one changes nothing.
    const recs = a.positional.map((n) => {
      const r = store.find(n);
      if (!r) throw new ImageError(`no image '${n}' in the store (see 'layerfs image ls')`);
      return r;
    });
    const lock = await store.lock();
    try {
      for (const seen of recs) {
        // Read again under the lock: another writer may have replaced or removed it meanwhile.
        const r = store.find(seen.name);
        if (!r) throw new ImageError(`image '${seen.name}' was removed meanwhile`);
        const { deleted, kept } = lock.removeImage(r);
        const keptNote = kept.length > 0 ? `; kept ${kept.length} layer${kept.length === 1 ? '' : 's'} still used by other images` : '';
        process.stdout.write(`removed ${r.name}: deleted ${deleted.length} layer${deleted.length === 1 ? '' : 's'}${keptNote}\n`);
      }
    } finally {
      lock.release();
    }
    return 0;
  });
}

async function imageExport(argv: string[]): Promise<number> {
  const a = parseArgs('image export', argv, {}, []);
  if (a.positional.length !== 2) throw new UsageError('layerfs image export: needs NAME and DIR');
  const { exportImage } = await import('./commit.ts');
  const store = Store.fromEnv();
  return guarded('image export', async () => {
    const r = await exportImage(store, a.positional[0], a.positional[1]);
    process.stdout.write(`exported ${r.name} to oci:${r.dir}:${r.tag}\n`);
    return 0;
  });
}

export async function cmdImage(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'import':
      return imageImport(rest);
    case 'ls':
    case 'list':
      return imageLs(rest);
    case 'rm':
    case 'remove':
      return imageRm(rest);
    case 'export':
      return imageExport(rest);
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(IMAGE_USAGE + '\n');
      return 0;
    case undefined:
      throw new UsageError('layerfs image: needs a subcommand: import, ls, rm, export (see layerfs image --help)');
    default:
      throw new UsageError(`layerfs image: unknown subcommand '${sub}' (import, ls, rm, export)`);
  }
}

export async function cmdDiff(argv: string[]): Promise<number> {
  const a = parseArgs('diff', argv, { '--from': 'from', '--lower': 'lower' }, ['--userxattr']);
  if (a.positional.length !== 1) throw new UsageError('layerfs diff: needs exactly one UPPER directory');
  if (a.values.has('from') && a.values.has('lower')) throw new UsageError('layerfs diff: --from and --lower exclude each other');
  const { diffUpper } = await import('./diff.ts');
  const store = Store.fromEnv();
  return guarded('diff', async () => {
    let lowers: string[] | undefined;
    if (a.values.has('from')) {
      const rec = store.find(a.values.get('from')!);
      if (!rec) throw new ImageError(`no image '${a.values.get('from')}' in the store (see 'layerfs image ls')`);
      lowers = rec.layers.map((l) => store.layerRoot(l.diffID)).reverse();
    } else if (a.values.has('lower')) {
      lowers = splitLowerdirs(a.values.get('lower')!).filter((l) => l !== '');
      if (lowers.length === 0) throw new UsageError('layerfs diff: --lower needs at least one layer');
    }
    const changes = diffUpper(a.positional[0], { lowers, userxattr: a.flags.has('--userxattr') });
    process.stdout.write(changes.map((c) => `${c.kind} ${c.path}\n`).join(''));
    return 0;
  });
}

export async function cmdCommit(argv: string[]): Promise<number> {
  const a = parseArgs('commit', argv, { '--name': 'name', '--from': 'from', '-m': 'message', '--message': 'message' }, ['--userxattr']);
  if (a.positional.length !== 1) throw new UsageError('layerfs commit: needs exactly one UPPER directory');
  const { commitUpper } = await import('./commit.ts');
  const store = Store.fromEnv();
  return guarded('commit', async () => {
    const r = await commitUpper(store, a.positional[0], {
      name: a.values.get('name'),
      from: a.values.get('from'),
      message: a.values.get('message'),
      userxattr: a.flags.has('--userxattr'),
    });
    for (const w of r.warnings) process.stderr.write(`layerfs commit: warning: ${w}\n`);
    process.stdout.write(`${r.record.name} ${r.record.configDigest.slice(7, 19)}: ${r.record.layers.length} layer${r.record.layers.length === 1 ? '' : 's'} (new layer ${r.layer.diffID.slice(7, 19)}, ${r.layer.entries} entries)\n`);
    return 0;
  });
}
