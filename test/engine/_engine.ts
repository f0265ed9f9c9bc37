// A private engine for a test: its own directory (LAYERFS_ENGINE_DIR), started on demand by
// the commands the test runs with `env`, stopped in teardown (by the pid in its lock file).

import type { ExecutionContext } from 'ava';
import * as path from 'node:path';
import { call, type Answer } from '../../src/engine/client.ts';
import { run } from '../helpers/exec.ts';
import { enginePid, layerfsBin, privateEngine } from '../helpers/mounts.ts';

export interface TestEngine {
  dir: string;
  socket: string;
  env: NodeJS.ProcessEnv;
  /** `layerfs ARGS` against this engine. */
  layerfs(args: string[], extraEnv?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** One API request. */
  api(method: string, p: string, body?: unknown): Promise<Answer>;
  pid(): number | null;
}

export function testEngine(t: ExecutionContext): TestEngine {
  const dir = privateEngine(t);
  const env = { LAYERFS_ENGINE_DIR: dir };
  const socket = path.join(dir, 'engine.sock');
  return {
    dir,
    socket,
    env,
    async layerfs(args, extraEnv) {
      const r = await run(layerfsBin, args, { viaFiles: true, env: { ...env, ...extraEnv }, timeoutMs: 60_000 });
      return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
    },
    api: (method, p, body) => call(method, p, body, socket),
    pid: () => enginePid(dir),
  };
}
