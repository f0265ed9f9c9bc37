// The results of a run and their Markdown table: workload × filesystem, the median of the
// repetitions (the maximum for peak memory), the ratios layerfs / kernel overlayfs and
// layerfs / fuse-overlayfs from the same run, and why a cell has no number when it has none.

import { median } from './common.ts';
import { FS_NAMES, type FsName } from './filesystems.ts';

export interface RowDef {
  id: string;
  label: string;
  /** Unit of the value (every value is "lower is better"). */
  unit: string;
  digits: number;
  /** How the repetitions are combined. Default: median. */
  agg?: 'median' | 'max';
  /** A second number shown in parentheses (throughput for the IO rows): derived from the value. */
  aux?: { unit: string; of: (v: number) => number; digits: number };
  /** Only filesystems with a daemon have a value (memory rows). */
  daemonOnly?: boolean;
}

interface Cell {
  values: number[];
  reason?: string;
  notes: string[];
}

export class Results {
  private cells = new Map<string, Map<FsName, Cell>>();
  /** Notes about the whole run, printed under the table. */
  readonly notes: string[] = [];

  private cell(row: string, fs: FsName): Cell {
    let r = this.cells.get(row);
    if (!r) this.cells.set(row, (r = new Map()));
    let c = r.get(fs);
    if (!c) r.set(fs, (c = { values: [], notes: [] }));
    return c;
  }

  add(row: string, fs: FsName, value: number): void {
    this.cell(row, fs).values.push(value);
  }

  /** No number for this cell, and why (kept from the first failure). */
  fail(row: string, fs: FsName, reason: string): void {
    const c = this.cell(row, fs);
    c.reason ??= reason.replace(/\s+/g, ' ').replace(/\|/g, '/').slice(0, 160);
  }

  /** A remark on a cell's number (shown as a footnote). */
  note(row: string, fs: FsName, text: string): void {
    const c = this.cell(row, fs);
    if (!c.notes.includes(text)) c.notes.push(text);
  }

  value(def: RowDef, fs: FsName): number | undefined {
    const c = this.cells.get(def.id)?.get(fs);
    if (!c || c.values.length === 0 || c.reason) return undefined;
    return def.agg === 'max' ? Math.max(...c.values) : median(c.values);
  }

  get(row: string, fs: FsName): Cell | undefined {
    return this.cells.get(row)?.get(fs);
  }
}

function num(v: number, digits: number): string {
  if (!Number.isFinite(v)) return '?';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || b === 0) return 'n/a';
  return `${(a / b).toFixed(2)}×`;
}

export interface Header {
  title: string;
  lines: string[];
}

/** The table as Markdown, with footnotes and the run's notes. */
export function renderTable(rows: RowDef[], res: Results, daemons: ReadonlySet<FsName>): string {
  const footnotes: string[] = [];
  const mark = (text: string): string => {
    let i = footnotes.indexOf(text);
    if (i < 0) i = footnotes.push(text) - 1;
    return `[${i + 1}]`;
  };
  const head = ['workload', 'unit', 'runs', ...FS_NAMES, 'layerfs / kernel', 'layerfs / fuse-overlayfs'];
  const out: string[] = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`];
  const runs = (id: string) => Math.max(0, ...FS_NAMES.map((n) => res.get(id, n)?.values.length ?? 0));
  for (const def of rows) {
    const cells: string[] = [];
    for (const fs of FS_NAMES) {
      const c = res.get(def.id, fs);
      const v = res.value(def, fs);
      let s: string;
      if (def.daemonOnly && !daemons.has(fs)) s = '— (no daemon)';
      else if (c?.reason) s = `— (${c.reason})`;
      else if (v === undefined) s = '— (not measured)';
      else {
        s = num(v, def.digits);
        if (def.aux) s += ` (${num(def.aux.of(v), def.aux.digits)} ${def.aux.unit})`;
      }
      for (const n of c?.notes ?? []) s += ` ${mark(n)}`;
      cells.push(s);
    }
    const l = res.value(def, 'layerfs');
    out.push(
      `| ${def.label} | ${def.unit} | ${runs(def.id)} | ${cells.join(' | ')} | ${ratio(l, res.value(def, 'kernel overlayfs'))} | ${ratio(l, res.value(def, 'fuse-overlayfs'))} |`,
    );
  }
  if (footnotes.length) {
    out.push('');
    footnotes.forEach((f, i) => out.push(`[${i + 1}] ${f}  `));
  }
  return out.join('\n');
}

/** Parse the main table written by renderTable back into cells (for the test). */
export function parseTable(md: string): { header: string[]; rows: string[][] } {
  const all = md.split('\n');
  const start = all.findIndex((l) => l.startsWith('| workload | unit |'));
  if (start < 0) return { header: [], rows: [] };
  const tl: string[] = [];
  for (const l of all.slice(start)) {
    if (!l.startsWith('|')) break;
    tl.push(l);
  }
  const split = (l: string) =>
    l
      .slice(1, -1)
      .split(' | ')
      .map((c) => c.trim());
  return { header: split(tl[0]!), rows: tl.slice(2).map(split) };
}
