// Progress of a long import or commit: one line on stderr, rewritten in place, only when
// stderr is a terminal (never in logs or pipes).

function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

export class Progress {
  private done = 0;
  private last = 0;
  private shown = false;
  private label = '';
  private readonly tty: boolean;

  constructor(
    private readonly what: string,
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = out.isTTY === true;
  }

  /** What is being worked on now (e.g. "layer 2/3"). */
  step(label: string): void {
    this.label = label;
    this.draw(true);
  }

  add(n: number): void {
    this.done += n;
    this.draw(false);
  }

  private draw(force: boolean): void {
    if (!this.tty) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const pct = this.total > 0 ? Math.min(100, Math.floor((this.done * 100) / this.total)) : 0;
    const line = `${this.what}: ${this.label} ${mib(this.done)} / ${mib(this.total)} (${pct}%)`;
    this.out.write(`\r\x1b[K${line}`);
    this.shown = true;
  }

  /** Clear the line (before the final message). */
  end(): void {
    if (this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
  }
}
