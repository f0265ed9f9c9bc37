// Where the engine lives: one directory D per user (root: /run/layerfs; others:
// $XDG_RUNTIME_DIR/layerfs, or /tmp/layerfs-UID/layerfs), overridable with LAYERFS_ENGINE_DIR
// (tests run a private engine this way). native/client/client.c computes the same path.
//
//   D/engine.sock   the API socket (mode 0600)
//   D/engine.lock   held (flock) by the running engine: one engine per directory
//   D/engine.log    its log
//   D/<id>.json     one state file per mount (./state.ts), D/<id>.sock its trace socket

export function engineDir(): string {
  const given = process.env.LAYERFS_ENGINE_DIR;
  if (given) return given;
  if (process.getuid?.() === 0) return '/run/layerfs';
  return `${process.env.XDG_RUNTIME_DIR || `/tmp/layerfs-${process.getuid?.() ?? 'user'}`}/layerfs`;
}

export const enginePaths = (dir = engineDir()) => ({
  dir,
  socket: `${dir}/engine.sock`,
  lock: `${dir}/engine.lock`,
  log: `${dir}/engine.log`,
});
