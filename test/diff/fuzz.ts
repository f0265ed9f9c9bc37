// Random differential testing: seeded operation sequences over a small namespace, run on
// kernel overlayfs and on layerfs, compared after every operation (its result) and at the end
// (merged view, upper dir) by the differential engine.
//
// A BATCH is one random layer set (2–3 lowers, empty upper) holding N independent SEQUENCES,
// each confined to its own top-level directory s0/, s1/, … and all run on one pair of mounts
// (a mount costs a daemon start). Inside its directory a sequence uses a tiny namespace —
// names a b c d in s/, a b c e in s/d/, a b c in s/d/e/ — so operations collide: the same
// names are written, removed, renamed over, turned into dirs, linked, whited out.
//
// A sequence that diverges is re-run alone and reduced by delta debugging, first over its
// operations, then over its layer entries, to a minimal reproducer, printed as the seed that
// regenerates it, a scenario literal for scenarios.ts, and a shell script.
//
// Everything is a pure function of the seed (mulberry32), so a seed reproduces a run exactly.
//
// The harness is in three parts, all re-exported here: fuzz-gen.ts (the PRNG, layer entries,
// random batches), fuzz-run.ts (running a batch, shrinking) and fuzz-print.ts (printing a
// reproducer).

export * from './fuzz-gen.ts';
export * from './fuzz-run.ts';
export * from './fuzz-print.ts';
