// The image commands' handlers. Their command lines (options, usage, the checks of the
// argument counts) are in the command table, src/cli/commands.ts:
//
//   layerfs image import SOURCE [--name NAME]    oci:DIR[:TAG] | docker-archive:FILE[:REF]
//   layerfs image ls [-q]
//   layerfs image rm NAME...
//   layerfs image export NAME DIR                 an OCI image layout (skopeo/umoci read it)
//   layerfs diff UPPER [--from IMAGE | --lower A:B] [--userxattr]
//   layerfs commit UPPER [--name NEW] [--from IMAGE] [--userxattr] [-m MESSAGE]
//
// The store is $LAYERFS_STORE (default /var/lib/layerfs). Every error is one line on stderr
// and exit status 1, with nothing left behind (bad arguments, 2, are the table's).

import type { Args } from '../cli/args.ts';
import { splitLowerdirs } from '../config.ts';
import { UserError } from '../engine/mount.ts';
import { ImageError } from './oci.ts';
import { humanSize, Store } from './store.ts';

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

/** `image import SOURCE [--name NAME]`. */
export async function imageImport(a: Args): Promise<number> {
  const { importImage } = await import('./importer.ts');
  const store = Store.fromEnv();
  return guarded('image import', async () => {
    const r = await importImage(store, a.positionals[0]!, {
      name: a.str('name'),
      onWait: () => process.stderr.write(`layerfs image import: waiting for another layerfs to release the store lock (${store.root})\n`),
    });
    for (const w of r.warnings) process.stderr.write(`layerfs image import: warning: ${w}\n`);
    const id = r.record.configDigest.slice(7, 19);
    const what = r.replaced && r.replaced.manifestDigest === r.record.manifestDigest ? ' (already stored)' : r.replaced ? ' (replaces the image of that name)' : '';
    process.stdout.write(`${r.record.name} ${id}: ${r.layers} layer${r.layers === 1 ? '' : 's'}, ${r.newLayers} new${what}\n`);
    return 0;
  });
}

/** `image ls [-q]`. */
export async function imageLs(a: Args): Promise<number> {
  const store = Store.fromEnv();
  return guarded('image ls', async () => {
    const recs = store.images();
    if (a.flag('quiet')) {
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

/** `image rm NAME...`. */
export async function imageRm(a: Args): Promise<number> {
  const store = Store.fromEnv();
  return guarded('image rm', async () => {
    // Check all names first: an unknown one changes nothing.
    const recs = a.positionals.map((n) => {
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

/** `image export NAME DIR`. */
export async function imageExport(a: Args): Promise<number> {
  const { exportImage } = await import('./commit.ts');
  const store = Store.fromEnv();
  return guarded('image export', async () => {
    const r = await exportImage(store, a.positionals[0]!, a.positionals[1]!);
    process.stdout.write(`exported ${r.name} to oci:${r.dir}:${r.tag}\n`);
    return 0;
  });
}

/** `diff UPPER [--from IMAGE | --lower A:B:C] [--userxattr]`. */
export async function cmdDiff(a: Args): Promise<number> {
  // --from and --lower exclude each other, and --lower names a layer: checked by the table.
  const from = a.str('from');
  const lower = a.str('lower');
  const { diffUpper } = await import('./diff.ts');
  const store = Store.fromEnv();
  return guarded('diff', async () => {
    let lowers: string[] | undefined;
    if (from !== undefined) {
      const rec = store.find(from);
      if (!rec) throw new ImageError(`no image '${from}' in the store (see 'layerfs image ls')`);
      lowers = rec.layers.map((l) => store.layerRoot(l.diffID)).reverse();
    } else if (lower !== undefined) {
      lowers = splitLowerdirs(lower).filter((l) => l !== '');
    }
    const changes = diffUpper(a.positionals[0]!, { lowers, userxattr: a.flag('userxattr') });
    process.stdout.write(changes.map((c) => `${c.kind} ${c.path}\n`).join(''));
    return 0;
  });
}

/** `commit UPPER [--name NEW] [--from IMAGE] [--userxattr] [-m MESSAGE]`. */
export async function cmdCommit(a: Args): Promise<number> {
  const { commitUpper } = await import('./commit.ts');
  const store = Store.fromEnv();
  return guarded('commit', async () => {
    const r = await commitUpper(store, a.positionals[0]!, {
      name: a.str('name'),
      from: a.str('from'),
      message: a.str('message'),
      userxattr: a.flag('userxattr'),
    });
    for (const w of r.warnings) process.stderr.write(`layerfs commit: warning: ${w}\n`);
    process.stdout.write(`${r.record.name} ${r.record.configDigest.slice(7, 19)}: ${r.record.layers.length} layer${r.record.layers.length === 1 ? '' : 's'} (new layer ${r.layer.diffID.slice(7, 19)}, ${r.layer.entries} entries)\n`);
    return 0;
  });
}
