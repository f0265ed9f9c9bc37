// Parsing `strace -f -y` output for test/hostile/strace.test.ts. Not a test file.

export interface Traced {
  call: string;
  path: string;
  line: string;
}

/** Calls whose string arguments are data, not paths. */
const DATA_CALLS = /^(read|write|pread64|pwrite64|readv|writev|preadv2?|pwritev2?|sendmsg|recvmsg|sendto|recvfrom|ioctl|memfd_create|splice|vmsplice|tee|copy_file_range|sendfile64|sendfile)$/;

function unquote(s: string): string {
  return s.replace(/\\x([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))).replace(/\\(["\\])/g, '$1');
}

/** Every path in a window of `strace -f -y` output: path arguments and descriptor paths. */
export function tracedPaths(text: string): { paths: Traced[]; relative: Traced[] } {
  const paths: Traced[] = [];
  const relative: Traced[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$/.exec(line);
    if (!m) continue;
    const resumed = m[1] !== undefined;
    const call = (m[1] ?? m[2])!;
    const rest = m[3]!;
    const strs = [...rest.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => unquote(x[1]!));
    // Descriptor paths (-y): N</path>, outside quoted strings.
    const bare = rest.replace(/"(?:[^"\\]|\\.)*"/g, '""');
    for (const d of bare.matchAll(/\b\d+<([^>]*)>/g)) paths.push({ call, path: d[1]!, line });
    if (resumed || DATA_CALLS.test(call)) continue; // a resumed call only prints outputs
    let args: string[];
    if (call === 'symlink') args = strs.slice(1, 2);
    else if (call === 'symlinkat') args = strs.slice(-1);
    else if (call.startsWith('readlink') || /^l?(get|set|list|remove)xattr$/.test(call)) args = strs.slice(0, 1);
    else if (/^f(get|set|list|remove)xattr$/.test(call)) args = [];
    else args = strs;
    // A dirfd-relative name: join it to the dirfd's path when the call starts with one.
    const dirfd = /^(\d+)<([^>]*)>,/.exec(bare)?.[2];
    for (const a of args) {
      if (a === '') continue; // AT_EMPTY_PATH
      if (a.startsWith('/')) paths.push({ call, path: a, line });
      else if (dirfd) paths.push({ call, path: `${dirfd}/${a}`, line });
      else relative.push({ call, path: a, line });
    }
  }
  return { paths, relative };
}

