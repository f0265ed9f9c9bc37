// Progress of a long import or commit: one line on stderr, rewritten in place, only when
// stderr is a terminal (never in logs or pipes).
//
// The work may pass over the same bytes more than once: an import copies each layer blob
// (checking its digest) and then unpacks the copy, so its `total` counts a new layer's size
// twice. The line therefore never shows the work done as a size. A step that says how many
// bytes it reads shows its own bytes, the whole job only as a percentage:
//
//   importing busybox:1: layer 1/2, copying 1.2 MiB / 2.0 MiB (30% in all)
//   importing busybox:1: layer 1/2, unpacking 0.5 MiB / 2.0 MiB (62% in all)
//
// Without a step size (one pass over the bytes, as a commit's unpack or a docker-archive's
// read) the sizes are the job's: `committing u: 1.2 MiB / 2.0 MiB (60%)`.

function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

export class Progress {
  private done = 0;
  private stepDone = 0;
  private stepSize: number | undefined;
  private last = 0;
  private shown = false;
  private label = '';
  private readonly tty: boolean;

  /**
   * `total`: all the bytes the job will add, counting every pass over them (a blob copied and
   * then unpacked counts twice).
   */
  constructor(
    private readonly what: string,
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = out.isTTY === true;
  }

  /**
   * What is being worked on now (e.g. "layer 2/3, copying"); `size`: the bytes this step will
   * add, when it is one pass of several over the same bytes.
   */
  step(label: string, size?: number): void {
    this.label = label;
    this.stepDone = 0;
    this.stepSize = size;
    this.draw(true);
  }

  add(n: number): void {
    this.done += n;
    this.stepDone += n;
    this.draw(false);
  }

  /** The line as drawn now (without the terminal's control characters). */
  line(): string {
    const pct = (done: number, total: number) => (total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : 0);
    const label = this.label ? `${this.label} ` : '';
    if (this.stepSize !== undefined) {
      return `${this.what}: ${label}${mib(this.stepDone)} / ${mib(this.stepSize)} (${pct(this.done, this.total)}% in all)`;
    }
    return `${this.what}: ${label}${mib(this.done)} / ${mib(this.total)} (${pct(this.done, this.total)}%)`;
  }

  private draw(force: boolean): void {
    if (!this.tty) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.out.write(`\r\x1b[K${this.line()}`);
    this.shown = true;
  }

  /** Clear the line (before the final message). */
  end(): void {
    if (this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
  }
}
