// The layerfs command line (bin/layerfs.mjs bundles this file). The commands, their usage and
// their options are the table in src/cli/commands.ts; src/cli/main.ts routes an argv to one of
// them (or to a mount: the fuse-overlayfs and mount.fuse3 forms) and turns failures into one
// line and an exit status.
import { main, reportFailure } from './cli/main.ts';

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  async (e: unknown) => {
    process.exit(await reportFailure(e));
  },
);
