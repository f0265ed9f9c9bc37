// The three argv forms that mount, and how the command layer tells them from subcommands:
//
//   layerfs mount [-f] [-d] [--trace FILE] -o OPTS MOUNTPOINT    the subcommand
//   layerfs [-f] [-d] -o OPTS MOUNTPOINT                          fuse-overlayfs' form (podman's mount_program)
//   layerfs SOURCE MOUNTPOINT -o OPTS                             mount.fuse3's form (mount -t fuse.layerfs, fstab)
//
// Their arguments are parsed by parseMountArgs (src/config.ts), a parser of its own on purpose:
// these forms are what podman and mount(8) run, byte for byte as fuse-overlayfs takes them, and
// util.parseArgs would change them (it splits `-fd` into -f -d, takes `--o` for `-o` and a lone
// `-` for a positional, and refuses values that start with a dash). The layer adds --help only.

import { parseMountArgs, validateMountConfig } from '../config.ts';

/** A mount option string that names lower layers (what every real mount has). */
const LOWERDIR = /(^|,)lowerdir=/;

/** Some argument names lower layers: the mount.fuse3 form with this SOURCE, not a subcommand. */
export function namesLowerdirs(argv: readonly string[]): boolean {
  return argv.some((a) => LOWERDIR.test(a));
}

/** Exactly the shape mount.fuse3 runs: SOURCE MOUNTPOINT -o OPTS, OPTS with lowerdir=. */
export function isFuse3Shape(argv: readonly string[]): boolean {
  return (
    argv.length === 4 &&
    argv[2] === '-o' &&
    !argv[0]!.startsWith('-') &&
    argv[1] !== '' &&
    !argv[1]!.startsWith('-') &&
    LOWERDIR.test(argv[3]!)
  );
}

/** An unknown first word is still a mount when there is an -o option or a lowerdir= anywhere. */
export function looksLikeMount(argv: readonly string[]): boolean {
  return argv.some((a) => /^-o/.test(a) || LOWERDIR.test(a));
}

/** -h/--help among the mount flags (not as the value of -o or --trace, not after `--`). */
export function mountWantsHelp(argv: readonly string[]): boolean {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return false;
    if (a === '-o' || a === '--trace') i++;
    else if (a === '-h' || a === '--help') return true;
  }
  return false;
}

/**
 * Mount: through the engine (returns once the mount serves; the engine checks the arguments
 * again, with this process' working directory), or serve in the foreground (-f/-d).
 */
export async function cmdMount(argv: readonly string[]): Promise<number> {
  const req = parseMountArgs([...argv]);
  const cfg = await validateMountConfig(req);
  if (!cfg.foreground && !cfg.debug) {
    const { forward } = await import('../engine/client.ts');
    return forward(['mount', ...argv]);
  }
  {
    const { setLogTarget } = await import('../log.ts');
    setLogTarget(process.env.LAYERFS_LOG || 'stderr');
    const { serve } = await import('../engine/daemon.ts');
    await serve(cfg, () => {});
    return -1; // keep serving; serve() exits the process when unmounted
  }
}
