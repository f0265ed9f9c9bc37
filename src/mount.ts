// Moved to src/engine/mount.ts. Kept only for the files outside src/ that still import this
// path (bench/, test/crash/, test/hostile/, test/podman/, test/helpers/); new code imports
// src/engine/mount.ts.
export * from './engine/mount.ts';
