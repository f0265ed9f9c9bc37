// Minimal typing of the parts of benchmark.js (npm `benchmark`, no bundled types) that
// bench/micro.ts uses.
declare module 'benchmark' {
  interface Stats {
    /** Seconds per operation. */
    mean: number;
    /** Relative margin of error, percent. */
    rme: number;
    sample: number[];
  }
  interface Options {
    maxTime?: number;
    minTime?: number;
    minSamples?: number;
    initCount?: number;
  }
  class Benchmark {
    constructor(name: string, fn: () => void, options?: Options);
    name: string;
    hz: number;
    stats: Stats;
    error?: Error;
    aborted: boolean;
    run(options?: { async?: boolean }): Benchmark;
  }
  export default Benchmark;
}
