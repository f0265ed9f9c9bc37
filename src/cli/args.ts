// The command layer's argument parsing: util.parseArgs (Node's own parser) for every command
// that has an options spec, checked token by token so that each mistake is one line
// `layerfs CMD: …` with exit status 2. Imports nothing heavy: src/cli.ts loads it on every start.

import { parseArgs } from 'node:util';

/** Bad arguments: one line on stderr, exit status 2. */
export class UsageError extends Error {
  readonly status = 2;
  constructor(message: string) {
    super(message.replace(/[\r\n]+/g, ' '));
    this.name = 'UsageError';
  }
}

/**
 * A util.parseArgs options spec. Keys are the long names (`--name`); `short` is one letter.
 * `-h`/`--help` is added by the layer to every command.
 */
export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

/** What a command's handler gets: its options by long name, and its positional arguments. */
export class Args {
  constructor(
    readonly values: ReadonlyMap<string, string | true | string[]>,
    readonly positionals: readonly string[],
  ) {}

  /** A string option's value (undefined when not given). */
  str(name: string): string | undefined {
    const v = this.values.get(name);
    return typeof v === 'string' ? v : undefined;
  }

  /** A boolean option: given or not. */
  flag(name: string): boolean {
    return this.values.get(name) === true;
  }

  /** A repeatable string option's values, in the order given. */
  list(name: string): string[] {
    const v = this.values.get(name);
    return Array.isArray(v) ? v : [];
  }
}

/** `{ help: true }` when -h/--help was given (before any `--`), else the checked arguments. */
export type ParseResult = { help: true } | { help: false; args: Args };

/**
 * Parse `argv` (the arguments after the command words) against `spec`. `cmd` names the command
 * in errors (`image import`). -h/--help anywhere before `--` wins over every other mistake.
 */
export function parseCommandArgs(cmd: string, argv: readonly string[], spec: OptionSpec): ParseResult {
  const options: OptionSpec = { ...spec, help: { type: 'boolean', short: 'h' } };
  // strict: false leaves the checks to us (util.parseArgs' own messages are long and
  // multi-sentence); tokens say exactly what was given, and how.
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help' && t.value === undefined)) return { help: true };

  const fail = (msg: string): never => {
    throw new UsageError(`layerfs ${cmd}: ${msg}`);
  };
  const values = new Map<string, string | true | string[]>();
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') {
      positionals.push(t.value);
      continue;
    }
    if (t.kind !== 'option') continue; // the `--` terminator
    const o = Object.hasOwn(options, t.name) ? options[t.name] : undefined;
    // `--q` is util.parseArgs' long spelling of a key `q`: only `--NAME` and `-SHORT` count.
    const spelled = t.rawName === `--${t.name}` || (o?.short !== undefined && t.rawName === `-${o.short}`);
    if (!o || !spelled) fail(`unknown option '${t.rawName}'`);
    if (o!.type === 'boolean') {
      if (t.value !== undefined) fail(`option '${t.rawName}' takes no value`);
      values.set(t.name, true);
      continue;
    }
    if (t.value === undefined) fail(`option '${t.rawName}' needs a value`);
    if (o!.multiple) {
      const prev = values.get(t.name);
      values.set(t.name, [...(Array.isArray(prev) ? prev : []), t.value!]);
    } else {
      if (values.has(t.name)) fail(`option '${t.rawName}' given twice`);
      values.set(t.name, t.value!);
    }
  }
  return { help: false, args: new Args(values, positionals) };
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions: imgae → image). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate nearest to `word`, if one is close (one edit for words of up to 4 letters, else two). */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const limit = word.length <= 4 ? 1 : 2;
  const near = [...new Set(candidates)].filter((c) => editDistance(word.toLowerCase(), c) <= limit);
  if (near.length === 0) return undefined;
  near.sort((x, y) => editDistance(word.toLowerCase(), x) - editDistance(word.toLowerCase(), y));
  return near[0];
}
