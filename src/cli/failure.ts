// A failure as the command line reports it: its one line and exit status. Shared by the
// process' own reporting (main.ts reportFailure) and by the engine, which runs forwarded command
// lines and answers with what the command would have printed (remote.ts).

import { ConfigError } from '../config.ts';
import { UsageError } from './args.ts';

export interface Failure {
  status: number;
  /** What goes to stderr, newline included. */
  text: string;
  /** Not one of ours: a bug or a system error (LAYERFS_DEBUG then shows its stack). */
  unexpected: boolean;
}

/** 2 for bad arguments (UsageError, the mount forms' ConfigError), UserError's own, else 1. */
export async function failureOf(e: unknown): Promise<Failure> {
  if (e instanceof UsageError || e instanceof ConfigError) return { status: 2, text: e.message + '\n', unexpected: false };
  // UserError lives with the mount code (it loads the syscall bindings): loaded only here.
  let UserError: (new (...a: never[]) => Error & { status: number }) | undefined;
  try {
    ({ UserError } = await import('../engine/mount.ts'));
  } catch {
    UserError = undefined;
  }
  if (UserError && e instanceof UserError) return { status: e.status, text: e.message + '\n', unexpected: false };
  return { status: 1, text: `layerfs: ${(e as Error)?.message ?? String(e)}\n`, unexpected: true };
}
