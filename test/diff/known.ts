// Divergences from kernel overlayfs that are known and explained, each tied to one scenario,
// one backend and an exact pattern — never a whole class of results. A known divergence that
// stops happening fails the test too, so this list cannot go stale.

export type Backend = 'fuse-native' | 'lowlevel';

export interface KnownDivergence {
  scenario: string;
  backend: Backend;
  why: string;
  /** Must match the whole divergence line. */
  match: RegExp;
}

/** The backend the tests mount with: layerfs' default, or LAYERFS_BACKEND (test/helpers/mounts.ts). */
export function currentBackend(): Backend {
  return process.env.LAYERFS_BACKEND === 'fuse-native' ? 'fuse-native' : 'lowlevel';
}

/** The same explained difference on every backend: a union-level choice, not a binding's limit. */
function allBackends(k: Omit<KnownDivergence, 'backend'>): KnownDivergence[] {
  return (['fuse-native', 'lowlevel'] as const).map((backend) => ({ ...k, backend }));
}

const ESCAPED_XATTRS =
  'since 6.7 the kernel stores overlay.* xattrs set through the mount escaped (trusted.overlay.overlay.*, for nested ' +
  'overlays) and reads them back, ENODATA when there is none; layerfs answers EOPNOTSUPP (README: where layerfs differs, not yet done)';

const SINGLE_LAYER_WHITEOUTS =
  'the kernel lists a directory that only one layer has straight from that layer, whiteouts included (names that ' +
  'lookup then says do not exist); layerfs never lists a whiteout (deliberate)';

const XWHITEOUT_NOT_EMPTY =
  "the kernel's emptiness check (rmdir, rename over a dir) counts xattr whiteout files as entries, though its listing " +
  'hides them: a dir that lists empty cannot be removed (ENOTEMPTY); layerfs removes what lists empty (deliberate)';

const NO_RENAME_FLAGS =
  "fuse-native's rename gets no flags: renameat2 with RENAME_NOREPLACE/RENAME_EXCHANGE fails with EINVAL once the VFS's own " +
  'checks pass (README: known defects of the binding)';

const MANGLED_NAMES =
  'fuse-native decodes names as UTF-8: bytes that are not valid UTF-8 become U+FFFD, so such names cannot be looked up and are ' +
  'created mangled (README: known defects of the binding)';

const NO_IOCTL =
  'fuse-native has no ioctl: lsattr and chattr fail with EOPNOTSUPP, so no inode flag is read or set (README: known ' +
  'defects of the binding)';

/** The lsattr/chattr ops of the inode-flags scenarios, failing on fuse-native (NO_IOCTL). */
const FLAGS_OPS_FAIL =
  /^op #\d+ (lsattr\(path="[^"]+"\)|chattr\(path="[^"]+", mode="[-+][aiAd]"\)): kernel=ok(: [-a-zA-Z]+)? layerfs=EXIT1: (lsattr|chattr): (Operation not supported [Ww]hile reading flags on|No such file or directory while trying to stat) \S+$/;

/** A pattern that matches exactly these lines. */
function exactly(...lines: string[]): RegExp {
  return new RegExp(`^(${lines.map((l) => l.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`);
}

export const known: KnownDivergence[] = [
  {
    scenario: 'copy-up on utimes',
    backend: 'fuse-native',
    why: 'fuse-native hands the atime over twice, so utimes(f, a, m) sets mtime=a (README: known defects of the binding)',
    // Same result but for the mtime.
    match: /^op #\d+ stat\(path="[^"]+", times=true\): kernel=ok: (.+) mtime=\d+ layerfs=ok: \1 mtime=\d+$/,
  },
  ...allBackends({
    scenario: 'xattrs: trusted.* as root, overlay-private names, symlinks, large values',
    why: ESCAPED_XATTRS,
    match: /^op #\d+ (get|set|remove)xattr\(path="[a-z]", name="trusted\.overlay\.opaque"(, value="y")?\): kernel=(ok|ok: "y"|ENODATA) layerfs=EOPNOTSUPP$/,
  }),
  ...allBackends({
    scenario: 'userxattr: user.overlay.* markers (and trusted.overlay.* ignored)',
    why: ESCAPED_XATTRS,
    match: /^op #\d+ (get|set)xattr\(path="[uw]", name="user\.overlay\.opaque"(, value="y")?\): kernel=(ok|ENODATA) layerfs=EOPNOTSUPP$/,
  }),
  ...allBackends({
    scenario: 'userxattr: user.overlay.* markers (and trusted.overlay.* ignored)',
    why: `${ESCAPED_XATTRS}: the escaped value shows as a user.* xattr through the kernel's mount`,
    match: /^merged: w: xattrs: kernel=\{"user\.overlay\.opaque":"\\"y\\""\} layerfs=\(none\)$/,
  }),
  ...allBackends({
    scenario: 'whiteouts inside a lower dir that no other layer merges with',
    why: SINGLE_LAYER_WHITEOUTS,
    match: /^op #\d+ readdir\(path="[dp]"\): kernel=ok: \["(a|b)","k"(,"o")?\] layerfs=ok: \["\1"\]$/,
  }),
  ...allBackends({
    scenario: 'whiteouts inside a lower dir that no other layer merges with',
    why: `${SINGLE_LAYER_WHITEOUTS}; the snapshot sees the listed name fail lstat`,
    match: /^merged: p\/k: only in kernel \(unknown\)$/,
  }),
  ...allBackends({
    scenario: 'rmdir of a dir that xattr whiteouts make look empty',
    why: XWHITEOUT_NOT_EMPTY,
    match: /^op #1 rmdir\(path="d"\): kernel=ENOTEMPTY layerfs=ok$/,
  }),
  ...allBackends({
    scenario: 'rmdir of a dir that xattr whiteouts make look empty',
    why: `${XWHITEOUT_NOT_EMPTY}: so d is still there on the kernel, whited out on layerfs`,
    match: /^(op #4 readdir\(path="\."\): kernel=ok: \["d"\] layerfs=ok: \[\]|merged: d: only in kernel \(dir 0755\)|upper: d: only in layerfs \(whiteout\))$/,
  }),
  // -- crossmount.test.ts: one implementation mounting the upper the other one wrote
  ...allBackends({
    scenario: 'crossmount: whiteouts inside a lower dir that no other layer merges with',
    why: `${SINGLE_LAYER_WHITEOUTS}; so the kernel's view lists p/k over either upper`,
    match: /^merged: p\/k: only in kernel( on layerfs's upper)? \(unknown\)$/,
  }),
  ...allBackends({
    scenario: 'crossmount: userxattr: user.overlay.* markers (and trusted.overlay.* ignored)',
    why: `${ESCAPED_XATTRS}: layerfs does not unescape the value the kernel stored`,
    match: /^merged: w: xattrs: kernel=\{"user\.overlay\.opaque":"\\"y\\""\} layerfs on kernel's upper=\(none\)$/,
  }),
  {
    scenario: 'crossmount: names that are not valid UTF-8',
    backend: 'fuse-native',
    why: `${MANGLED_NAMES}: the kernel's view has the real names, over either upper; layerfs' view has none`,
    match: /^merged \(raw names\): "[^"]*\\u0000[0-9a-f]+[^"]*": only in kernel( on layerfs's upper)? \(.+\)$/u,
  },
  {
    scenario: 'RENAME_NOREPLACE',
    backend: 'fuse-native',
    why: NO_RENAME_FLAGS,
    match: /^op #\d+ rename2\(from="[a-z]+", to="[a-z]+", flags="noreplace"\): kernel=ok layerfs=EINVAL$/,
  },
  {
    scenario: 'RENAME_NOREPLACE',
    backend: 'fuse-native',
    why: `${NO_RENAME_FLAGS}: the two renames that succeed on the kernel did not happen`,
    match: /^op #7 readdir\(path="\."\): kernel=ok: \["b","d","e","new","v","w"\] layerfs=ok: \["a","b","d","e","u","v"\]$/,
  },
  {
    scenario: 'RENAME_NOREPLACE',
    backend: 'fuse-native',
    why: `${NO_RENAME_FLAGS}: u→w and a→new did not happen`,
    match: /^((merged|upper): (new|w): only in kernel \(file 0644\)|(merged|upper): (a|u): only in layerfs \(file 0644\)|upper: a: only in kernel \(whiteout\))$/,
  },
  {
    scenario: 'RENAME_EXCHANGE',
    backend: 'fuse-native',
    why: NO_RENAME_FLAGS,
    match: /^op #\d+ rename2\(from="[a-z]+", to="[a-z]+", flags="exchange"\): kernel=(ok|EXDEV) layerfs=EINVAL$/,
  },
  {
    scenario: 'RENAME_EXCHANGE',
    backend: 'fuse-native',
    why: `${NO_RENAME_FLAGS}: u⇄v and a⇄u did not happen`,
    match: /^(op #\d+ readFile\(path="[auv]"\): kernel=ok: "(lower a|upper u|upper v)" layerfs=ok: "(lower a|upper u|upper v)"|(merged|upper): [auv]: sha256: kernel=[0-9a-f]{64} layerfs=[0-9a-f]{64}|upper: a: only in kernel \(file 0644\))$/,
  },
  {
    scenario: 'names that are not valid UTF-8',
    backend: 'fuse-native',
    why: MANGLED_NAMES,
    // An op on a name given as raw bytes, or a listing that holds one.
    match: /^op #\d+ (\w+\((path|from)="[^"]*\\u0000[0-9a-f]+[^"]*".*\): kernel=.+ layerfs=ENOENT|readdir\(path="(\.|d)"\): kernel=ok: \[.*\\u0000[0-9a-f]+.*\] layerfs=ok: \[.*\uFFFD.*\])$/u,
  },
  {
    scenario: 'names that are not valid UTF-8',
    backend: 'fuse-native',
    why: `${MANGLED_NAMES}; the snapshots see the mangled names (U+FFFD) and the byte-exact walk the real ones`,
    match: /^((merged|upper): [^:]*\uFFFD[^:]*: .+|(merged|upper) \(raw names\): "[^"]*\\u0000[0-9a-f]+[^"]*": only in kernel \(.+\))$/u,
  },
  {
    scenario: 'names that are not valid UTF-8',
    backend: 'fuse-native',
    why: `${MANGLED_NAMES}: the rename of the name 0xff failed with ENOENT`,
    match: /^(merged|upper): ff-renamed: only in kernel \(file 0644\)$/,
  },
  ...['inode flags: lsattr and chattr on lower, upper and merged objects',
    'inode flags: immutable and append-only are kept by the overlay and enforced',
    'inode flags: userxattr keeps the protection flags in user.overlay.protattr'].map((scenario): KnownDivergence => ({
    scenario,
    backend: 'fuse-native',
    why: NO_IOCTL,
    match: FLAGS_OPS_FAIL,
  })),
  {
    scenario: 'inode flags: lsattr and chattr on lower, upper and merged objects',
    backend: 'fuse-native',
    why: `${NO_IOCTL}: chattr copied nothing up`,
    match: /^upper: (d: only in kernel \(dir 0755\)|f: only in kernel \(file 0644\))$/,
  },
  ...['inode flags: immutable and append-only are kept by the overlay and enforced',
    'inode flags: userxattr keeps the protection flags in user.overlay.protattr'].map((scenario): KnownDivergence => ({
    scenario,
    backend: 'fuse-native',
    why: `${NO_IOCTL}: nothing is protected, what the kernel refuses (EPERM) is done`,
    match: /^op #\d+ \w+\((path|from)="[^"]+".*\): kernel=EPERM layerfs=(ok|ENOENT)$/,
  })),
  {
    scenario: 'inode flags: immutable and append-only are kept by the overlay and enforced',
    backend: 'fuse-native',
    why: `${NO_IOCTL}: nothing was protected, so g was renamed over, h, lf, d/x, d/src, d/nd and e removed`,
    match: exactly(
      'op #13 readFile(path="g"): kernel=ok: "g" layerfs=ok: "u"',
      'op #22 readFile(path="h"): kernel=ok: "h+more" layerfs=ENOENT',
      'op #35 readdir(path="d"): kernel=ok: ["nd","new","src","x"] layerfs=ok: ["new"]',
      'op #42 readdir(path="e"): kernel=ok: ["y"] layerfs=ENOENT',
      'op #49 unlink(path="lf"): kernel=ok layerfs=ENOENT',
      'op #51 unlink(path="d/x"): kernel=ok layerfs=ENOENT',
      'op #54 readdir(path="."): kernel=ok: ["d","h","u"] layerfs=ok: ["d","g3","h"]',
      'merged: d/nd: only in kernel (dir 0755)',
      'merged: d/src: only in kernel (file 0644)',
      'merged: g3: only in layerfs (file 0644)',
      'merged: u: only in kernel (file 0644)',
      'upper: d/nd: only in kernel (dir 0755)',
      'upper: d/src: only in kernel (file 0644)',
      'upper: g3: only in layerfs (file 0644)',
      'upper: u: only in kernel (file 0644)',
    ),
  },
  {
    scenario: 'inode flags: userxattr keeps the protection flags in user.overlay.protattr',
    backend: 'fuse-native',
    why: `${NO_IOCTL}: nothing was protected, so f and d/x were removed`,
    match: exactly(
      'op #3 listxattr(path="f"): kernel=ok: [] layerfs=ENOENT',
      'op #8 unlink(path="f"): kernel=ok layerfs=ENOENT',
      'merged: d/x: only in kernel (file 0644)',
      'upper: d/x: only in layerfs (whiteout)',
    ),
  },
];

/** Split divergences into explained and unexplained ones, and list known ones that did not occur. */
export function classify(scenario: string, divergences: string[], backend = currentBackend()) {
  const rules = known.filter((k) => k.scenario === scenario && k.backend === backend);
  const used = new Set<KnownDivergence>();
  const explained: string[] = [];
  const unexplained: string[] = [];
  for (const d of divergences) {
    const rule = rules.find((k) => k.match.test(d));
    if (rule) {
      used.add(rule);
      explained.push(`${d}\n      known (${backend}): ${rule.why}`);
    } else {
      unexplained.push(d);
    }
  }
  const stale = rules.filter((k) => !used.has(k));
  return { explained, unexplained, stale };
}
