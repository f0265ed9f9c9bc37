import { appendFileSync } from 'node:fs';

/** Daemon diagnostics: to LAYERFS_LOG (a file) when set, else to stderr in the foreground. */
let target: string | 'stderr' | null = process.env.LAYERFS_LOG || null;

export function setLogTarget(t: string | 'stderr' | null): void {
  target = t;
}

export function logTarget(): string | 'stderr' | null {
  return target;
}

export function log(msg: string): void {
  if (!target) return;
  const line = `${new Date().toISOString()} layerfs[${process.pid}]: ${msg}\n`;
  if (target === 'stderr') process.stderr.write(line);
  else {
    try {
      appendFileSync(target, line);
    } catch {
      // logging must never take the daemon down
    }
  }
}
