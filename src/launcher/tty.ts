// `-t`: the container gets a pseudo-terminal of its own devpts instance (so `tty` names
// /dev/pts/0 inside, and nothing inside can reach the caller's terminal with TIOCSTI). The
// launcher opens the master through /proc/PID/root of stage 2 and relays it to its own stdio.

import * as fs from 'node:fs';
import * as tty from 'node:tty';
import * as sys from '../sys/index.ts';

/** Open a new pseudo-terminal in the devpts mounted at `ptsDir` (a host-visible path); returns the master and slave number. */
export function openPtyMaster(ptsDir: string): { master: number; index: number } {
  const master = fs.openSync(`${ptsDir}/ptmx`, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  try {
    const index = sys.ptyUnlock(master);
    const [cols, rows] = process.stdout.isTTY ? process.stdout.getWindowSize() : [0, 0];
    sys.setWinSize(master, rows > 0 && cols > 0 ? { rows, cols } : { rows: 24, cols: 80 });
    return { master, index };
  } catch (e) {
    fs.closeSync(master);
    throw e;
  }
}

/**
 * Relay between our stdio and the master until the slave side is closed by the last process
 * holding it (read gives EIO). Returns a function that resolves once the output is drained.
 */
export function relay(master: number, forwardInput: boolean): { done: Promise<void>; stop: () => void } {
  const out = new tty.ReadStream(master);
  const stdin = process.stdin;
  let rawSet = false;
  const pending: Buffer[] = [];
  let writing = false;
  const pump = (): void => {
    if (writing) return;
    writing = true;
    while (pending.length > 0) {
      const b = pending[0];
      let n: number;
      try {
        n = fs.writeSync(master, b);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') {
          writing = false;
          setTimeout(pump, 5);
          return;
        }
        pending.length = 0; // EIO: the container is gone
        break;
      }
      if (n < b.length) pending[0] = b.subarray(n);
      else pending.shift();
    }
    writing = false;
  };
  const onInput = (d: Buffer): void => {
    pending.push(d);
    pump();
  };
  const onResize = (): void => {
    try {
      const [cols, rows] = process.stdout.getWindowSize();
      sys.setWinSize(master, { rows, cols });
    } catch {
      /* closed */
    }
  };
  if (forwardInput) {
    if (stdin.isTTY) {
      stdin.setRawMode(true);
      rawSet = true;
    }
    stdin.on('data', onInput);
    stdin.resume();
  }
  if (process.stdout.isTTY) process.stdout.on('resize', onResize);
  const stop = (): void => {
    if (forwardInput) {
      stdin.off('data', onInput);
      stdin.pause();
      if (rawSet) stdin.setRawMode(false);
      rawSet = false;
    }
    process.stdout.off('resize', onResize);
    out.destroy();
  };
  const done = new Promise<void>((resolve) => {
    out.on('data', (d: Buffer) => process.stdout.write(d));
    out.on('error', () => resolve()); // EIO once the slave is closed everywhere
    out.on('end', () => resolve());
    out.on('close', () => resolve());
  });
  return { done, stop };
}
