/**
 * Seccomp for `layerfs run`, compiling a checked profile for one container (its capabilities,
 * the native architecture, the kernel): compileProfile, re-exported by ./seccomp.ts.
 */
import os from 'node:os';
import { ARCH_BY_ALIAS } from './seccomp-profile.ts';
import { oneLine, SeccompError, type CompileOptions, type KernelVersion, type Profile, type Spec, type SpecRule } from './seccomp-spec.ts';

/** process.arch -> libseccomp's name of the native architecture. */
function nativeArch(nodeArch: string): string | undefined {
  switch (nodeArch) {
    case 'x64': return 'x86_64';
    case 'ia32': return 'x86';
    case 'arm64': return 'aarch64';
    case 'arm': return 'arm';
    case 'ppc64': return os.endianness() === 'LE' ? 'ppc64le' : 'ppc64';
    case 'ppc': return 'ppc';
    case 's390x': return 's390x';
    case 's390': return 's390';
    case 'riscv64': return 'riscv64';
    case 'mips': return 'mips';
    case 'mipsel': return 'mipsel';
    default: return undefined;
  }
}

function kernelVersion(release: string): KernelVersion | null {
  const m = /^([0-9]+)\.([0-9]+)/.exec(release);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}

function atLeast(k: KernelVersion, min: KernelVersion): boolean {
  return k.major > min.major || (k.major === min.major && k.minor >= min.minor);
}

/**
 * The filter a container gets from `profile`, the way docker builds it: an entry applies when
 * all of its includes.caps are granted and none of its excludes.caps; when the native
 * architecture is among includes.arches (if any) and not among excludes.arches; when the kernel
 * is at least includes.minKernel and older than excludes.minKernel. Architectures: the
 * profile's `architectures`, or the archMap entry of the native one with its
 * sub-architectures.
 * @throws SeccompError (a machine libseccomp has no architecture for, an unreadable kernel version)
 */
export function compileProfile(profile: Profile, opts: CompileOptions): Spec {
  const fail = (what: string): never => {
    throw new SeccompError(`seccomp profile ${oneLine(profile.source)}: ${what}`);
  };
  const nodeArch = opts.arch ?? process.arch;
  const native = nativeArch(nodeArch);
  if (!native) return fail(`no seccomp architecture for this machine (${nodeArch})`);
  const release = opts.kernel ?? os.release();
  let kernel: KernelVersion | null | undefined;
  const kernelAtLeast = (min: KernelVersion): boolean => {
    if (kernel === undefined) kernel = kernelVersion(release);
    if (!kernel) return fail(`cannot tell the kernel version from ${JSON.stringify(release)} (for minKernel)`);
    return atLeast(kernel, min);
  };
  const isNative = (names: string[]): boolean => names.some((a) => ARCH_BY_ALIAS.get(a) === native);

  const arches: string[] = [...profile.architectures];
  for (const m of profile.archMap) {
    if (m.architecture === native) arches.push(m.architecture, ...m.subArchitectures);
  }
  const rules: SpecRule[] = [];
  for (const e of profile.syscalls) {
    const { includes: inc, excludes: exc } = e;
    if (inc.caps.some((c) => !opts.caps.has(c))) continue;
    if (exc.caps.some((c) => opts.caps.has(c))) continue;
    if (inc.arches.length > 0 && !isNative(inc.arches)) continue;
    if (exc.arches.length > 0 && isNative(exc.arches)) continue;
    if (inc.minKernel && !kernelAtLeast(inc.minKernel)) continue;
    if (exc.minKernel && kernelAtLeast(exc.minKernel)) continue;
    for (const name of e.names) rules.push({ name, action: { ...e.action }, args: e.args.map((a) => ({ ...a })) });
  }
  return {
    defaultAction: { ...profile.defaultAction },
    arches: [...new Set(arches)],
    rules,
    log: profile.log,
    specAllow: profile.specAllow,
  };
}
