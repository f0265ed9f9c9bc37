// Moved to src/engine/state.ts. Kept only for the files outside src/ that still import this
// path (bench/, test/crash/, test/hostile/, test/podman/, test/explain.test.ts); new code
// imports src/engine/state.ts.
export * from './engine/state.ts';
