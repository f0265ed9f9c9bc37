// A container's output, as docker's json-file driver keeps it: one JSON object per line,
// {"log":"…\n","stream":"stdout"|"stderr","time":"…Z"}, a line per line of output (a long line
// cut at 16 KiB, without its "\n"). Bounded: when log.json reaches MAX_BYTES it becomes
// log.json.1 (the older half, replacing the previous one) and a new log.json starts, so a
// container never keeps more than twice MAX_BYTES.

import * as fs from 'node:fs';

export const MAX_BYTES = 8 << 20;
const MAX_LINE = 16 << 10;

export interface LogRecord {
  log: string;
  stream: 'stdout' | 'stderr';
  time: string;
}

export class LogWriter {
  private fd: number;
  private size: number;
  private readonly partial: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };
  private readonly listeners = new Set<(r: LogRecord) => void>();

  constructor(
    private readonly file: string,
    private readonly maxBytes = MAX_BYTES,
  ) {
    this.fd = fs.openSync(file, 'a', 0o600);
    this.size = fs.fstatSync(this.fd).size;
  }

  /** Told of every record as it is written (`logs -f`); returns the unsubscribe. */
  onRecord(l: (r: LogRecord) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Output of `stream`: cut into lines; an unfinished line waits for the rest (or flush). */
  write(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    let text = this.partial[stream] + chunk.toString('utf8');
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0 || text.length >= MAX_LINE) {
      const cut = nl >= 0 && nl < MAX_LINE ? nl + 1 : MAX_LINE;
      this.record(stream, text.slice(0, cut));
      text = text.slice(cut);
    }
    this.partial[stream] = text;
  }

  /** What is left of unfinished lines (the stream ended). */
  flush(): void {
    for (const s of ['stdout', 'stderr'] as const) {
      if (this.partial[s]) this.record(s, this.partial[s]);
      this.partial[s] = '';
    }
  }

  close(): void {
    this.flush();
    fs.closeSync(this.fd);
    this.listeners.clear();
  }

  private record(stream: 'stdout' | 'stderr', log: string): void {
    const r: LogRecord = { log, stream, time: new Date().toISOString() };
    const line = JSON.stringify(r) + '\n';
    if (this.size + line.length > this.maxBytes && this.size > 0) this.rotate();
    fs.writeSync(this.fd, line);
    this.size += Buffer.byteLength(line);
    for (const l of this.listeners) l(r);
  }

  private rotate(): void {
    fs.closeSync(this.fd);
    fs.renameSync(this.file, `${this.file}.1`);
    this.fd = fs.openSync(this.file, 'a', 0o600);
    this.size = 0;
  }
}

/** The records of a log (the older file first), the last `tail` of them when given. */
export function readLog(file: string, tail?: number): LogRecord[] {
  const out: LogRecord[] = [];
  for (const f of [`${file}.1`, file]) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        out.push(JSON.parse(line) as LogRecord);
      } catch {
        /* a line cut by a crash */
      }
    }
  }
  return tail === undefined ? out : out.slice(Math.max(0, out.length - tail));
}
