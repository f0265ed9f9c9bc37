import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './root.ts';
import { ConfigError, parseMountArgs, validateMountConfig, type MountConfig } from './config.ts';
import { setLogTarget } from './log.ts';
import { mountBackground, unmount, UserError } from './mount.ts';

const USAGE = `usage:
  layerfs mount [-f] [-d] [--trace FILE] -o lowerdir=A:B[,upperdir=U,workdir=W][,OPTIONS] MOUNTPOINT
  layerfs -o OPTIONS MOUNTPOINT            (fuse-overlayfs / podman form)
  layerfs SOURCE MOUNTPOINT -o OPTIONS     (mount -t fuse.layerfs form)
  layerfs umount [-l] MOUNTPOINT
  layerfs explain [--json] MOUNTPOINT PATH               which layer serves PATH, what it shadows,
                                                         what hides it (exit 0 found, 1 missing,
                                                         2 bad arguments, 3 not a layerfs mount)
  layerfs trace [--json] MOUNTPOINT                      the union's decisions as they happen
                                                         (lookups, copy-ups, whiteouts, opaque dirs)
  layerfs trace [--json] FILE                            a trace written by --trace FILE / -o trace=FILE
  layerfs run [OPTIONS] --lower A:B:C [--upper U --work W] -- CMD [ARGS...]   (see run --help)
  layerfs run [OPTIONS] IMAGE [--] [CMD [ARGS...]]       an image of the store (defaults from its config)
  layerfs image import oci:DIR[:TAG] | docker-archive:FILE [--name NAME]
  layerfs image ls | image rm NAME... | image export NAME DIR
  layerfs diff UPPER [--from IMAGE | --lower A:B:C]       changes as A/C/D lines (like docker diff)
  layerfs commit UPPER [--name NEW] [--from IMAGE]        the upper as a new image layer
  layerfs --version | --help
Layers: A is the top-most lower (explain and trace call it lower1). Without upperdir/workdir the mount is read-only.
Images are stored in $LAYERFS_STORE (default /var/lib/layerfs); see layerfs image --help.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

async function cmdMount(argv: string[]): Promise<number> {
  const req = parseMountArgs(argv);
  const cfg = await validateMountConfig(req);
  if (cfg.foreground || cfg.debug) {
    setLogTarget(process.env.LAYERFS_LOG || 'stderr');
    const { serve } = await import('./fuse/serve.ts');
    await serve(cfg, () => {});
    return -1; // keep serving; serve() exits the process when unmounted
  }
  await mountBackground(cfg);
  return 0;
}

/** The detached daemon started by mountBackground: reports "ok" or "error: …" on fd 3. */
async function cmdServe(): Promise<number> {
  const cfg = JSON.parse(process.env.LAYERFS_CONFIG ?? 'null') as MountConfig | null;
  if (!cfg) throw new UserError('layerfs: __serve is internal');
  const { createWriteStream } = await import('node:fs');
  const report = createWriteStream('', { fd: 3 });
  const { serve } = await import('./fuse/serve.ts');
  try {
    await serve(cfg, () => report.end('ok\n'));
  } catch (e) {
    await new Promise<void>((r) => report.end(`error: ${(e as Error).message.split('\n')[0]}\n`, () => r()));
    return 1;
  }
  return -1;
}

async function cmdUmount(argv: string[]): Promise<number> {
  let lazy = false;
  const rest: string[] = [];
  for (const a of argv) {
    if (a === '-l' || a === '--lazy') lazy = true;
    else if (a.startsWith('-')) throw new UserError(`layerfs: unknown option '${a}' for umount`);
    else rest.push(a);
  }
  if (rest.length !== 1) throw new UserError('layerfs: umount needs exactly one MOUNTPOINT');
  await unmount(rest[0], { lazy });
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      (cmd ? process.stdout : process.stderr).write(USAGE + '\n');
      return cmd ? 0 : 2;
    case '-V':
    case '--version':
    case 'version':
      process.stdout.write(`layerfs ${version()}\n`);
      return 0;
    case 'mount':
      return cmdMount(rest);
    case 'umount':
    case 'unmount':
      return cmdUmount(rest);
    case '__serve':
      return cmdServe();
    case 'run':
      return (await import('./launcher/run.ts')).cmdRun(rest);
    case 'explain':
    case 'trace':
      // As with image/diff/commit: mount.fuse3's form with such a SOURCE stays a mount.
      if (rest.some((a) => /(^|,)lowerdir=/.test(a))) return cmdMount(argv);
      return cmd === 'explain' ? (await import('./explain.ts')).cmdExplain(rest) : (await import('./trace.ts')).cmdTrace(rest);
    case 'image':
    case 'images':
    case 'diff':
    case 'commit': {
      // mount.fuse3's form with a SOURCE that happens to be one of these words stays a mount.
      if (rest.some((a) => /(^|,)lowerdir=/.test(a))) return cmdMount(argv);
      const image = await import('./image/cli.ts');
      return cmd === 'diff' ? image.cmdDiff(rest) : cmd === 'commit' ? image.cmdCommit(rest) : image.cmdImage(rest);
    }
    default:
      // podman and mount.fuse3 call the program with mount arguments and no subcommand.
      return cmdMount(argv);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    if (e instanceof ConfigError) {
      process.stderr.write(e.message + '\n');
      process.exit(2);
    }
    if (e instanceof UserError) {
      process.stderr.write(e.message + '\n');
      process.exit(e.status);
    }
    const err = e as NodeJS.ErrnoException;
    process.stderr.write(`layerfs: ${err?.message ?? String(e)}\n`);
    if (process.env.LAYERFS_DEBUG) process.stderr.write(`${err?.stack}\n`);
    process.exit(1);
  },
);
