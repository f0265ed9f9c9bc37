// The layerfs command line (bin/layerfs.mjs bundles this file). The commands, their usage and
// their options are the table in src/cli/commands.ts; src/cli/main.ts routes an argv to one of
// them (or to a mount: the fuse-overlayfs and mount.fuse3 forms) and turns failures into one
// line and an exit status. On a worker thread of the engine (src/engine/isolate.ts) the same
// bundle serves one mount instead.
import { workerData } from 'node:worker_threads';
import { main, reportFailure } from './cli/main.ts';

if ((workerData as { layerfsWorker?: string } | null)?.layerfsWorker === 'mount') {
  void import('./engine/isolate.ts').then((m) => m.runMountWorker());
} else {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exit(code);
    },
    async (e: unknown) => {
      process.exit(await reportFailure(e));
    },
  );
}
