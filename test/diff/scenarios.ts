// The scenario list of the differential harness. Each scenario describes its
// layers (lowers top-most first, optionally a pre-populated upper) and a list
// of operations; the engine runs it on kernel overlayfs and on layerfs and
// compares every op result plus the final merged view and upper dir.
//
// Scenarios say what they exercise; they do NOT encode expected results —
// the kernel is the reference. Comments note what the kernel does where it is
// not obvious (observed on Linux 6.18, default module options:
// redirect_dir=off, index=off, metacopy=off, xino=off).
//
// The scenarios live in parts by theme, kept in this order (known.ts and the harness name them,
// and the order is the order they run in): scenarios-layering.ts, scenarios-objects.ts (the
// base list), then scenarios-formats.ts (with scenarios-rename-matrix.ts) and
// scenarios-edges.ts; scenarios-common.ts holds what they share.

import type { Scenario } from './engine.ts';
import { edgeScenarios } from './scenarios-edges.ts';
import { formatScenarios } from './scenarios-formats.ts';
import { layeringScenarios } from './scenarios-layering.ts';
import { objectScenarios } from './scenarios-objects.ts';

const baseScenarios: Scenario[] = [...layeringScenarios, ...objectScenarios];

const moreScenarios: Scenario[] = [...formatScenarios, ...edgeScenarios];

export const scenarios: Scenario[] = [...baseScenarios, ...moreScenarios];
