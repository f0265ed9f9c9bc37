/**
 * Seccomp filters for `layerfs run`: docker's (and podman's) JSON profile format, read and
 * checked here, compiled by libseccomp in the project's own addon (native/layerfs_seccomp.cc,
 * build/Release/layerfs_seccomp.node).
 *
 *   parseProfile(text, file)   -> Profile   the JSON, every field checked; SeccompError otherwise
 *   compileProfile(profile, {caps})  -> Spec   includes/excludes applied for one container
 *   specToWire / specFromWire  Spec <-> plain JSON (BigInts as decimal strings), for stage 2
 *   loadSeccomp(spec)          the filter, into the calling process (and every thread of it)
 *
 * The launcher parses and compiles (so a bad profile is an error before anything starts); stage
 * 2 only loads, right before it execve()s the command. This file is the surface (and reads the
 * default profile when it is imported); the parts are ./seccomp-spec.ts (the types, SeccompError,
 * the wire form), ./seccomp-profile.ts (the parser), ./seccomp-compile.ts (the compiler) and
 * ./seccomp-addon.ts (the addon, loaded when it is imported; loading it installs nothing: only
 * loadSeccomp() does). Stage 2 pivots into the container's root after importing its modules, so
 * it imports ./seccomp-addon.ts and ./seccomp-spec.ts directly. The FUSE daemon never imports
 * any of them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../root.ts';
import { parseProfile } from './seccomp-profile.ts';
import { oneLine, SeccompError, type Profile } from './seccomp-spec.ts';

export type {
  Action,
  ActionKind,
  ArchMapEntry,
  ArgCompare,
  CompareOp,
  CompileOptions,
  Condition,
  KernelVersion,
  Profile,
  SeccompWire,
  Spec,
  SpecRule,
  SyscallEntry,
} from './seccomp-spec.ts';
export { SeccompError, specFromWire, specToWire } from './seccomp-spec.ts';
export { MAX_NAMES_PER_ENTRY, MAX_PROFILE_BYTES, MAX_SYSCALL_ENTRIES, parseProfile } from './seccomp-profile.ts';
export { compileProfile } from './seccomp-compile.ts';
export { loadSeccomp, resolveSyscall, SECCOMP_ADDON_PATH } from './seccomp-addon.ts';

// ---------------------------------------------------------------------------
// The default profile

export const DEFAULT_PROFILE_PATH = path.join(ROOT, 'src', 'launcher', 'seccomp', 'default.json');

let defaultText: string | null = null;
let defaultReadError: Error | null = null;
try {
  defaultText = fs.readFileSync(DEFAULT_PROFILE_PATH, 'utf8');
} catch (e) {
  defaultReadError = e as Error;
}
let defaultParsed: Profile | undefined;

/** The default profile (src/launcher/seccomp/default.json, read when this module was imported). @throws SeccompError */
export function defaultProfile(): Profile {
  if (defaultText === null) {
    throw new SeccompError(`seccomp profile ${DEFAULT_PROFILE_PATH}: cannot read it: ${oneLine(defaultReadError?.message ?? '')}`);
  }
  defaultParsed ??= parseProfile(defaultText, DEFAULT_PROFILE_PATH);
  return structuredClone(defaultParsed); // callers may change their copy
}
