// The escaping of option strings, as fuse-overlayfs has it: a backslash makes the next character
// literal, so "\," does not end an option and "\:" does not end a layer path. Escapes stay in
// the items splitOptions returns; they are removed per value. Also the quoting of user-supplied
// strings in error messages.

export function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

/** Quote a user-supplied string for an error message. */
export function q(s: string): string {
  return `'${oneLine(s)}'`;
}

/** Remove backslash escapes: "\x" becomes "x"; a trailing lone backslash is kept. */
export function unescape(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      out += s[i + 1];
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

/**
 * Split s on every unescaped occurrence of sep, keeping the escapes in the
 * pieces. Empty pieces are kept.
 */
function splitUnescaped(s: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === sep) {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

// SELinux context options carry a value such as
//   context="system_u:object_r:container_file_t:s0:c1,c2"
// (podman formats it that way, quoting because the MCS categories contain a
// comma). Inside the double quotes of these options only, a comma does not
// separate options.
const QUOTED_CONTEXT_START = /^(?:fs|def|root)?context="/;

/**
 * Split an -o string into options on unescaped commas, dropping empty items.
 * Escapes are kept in the items (they are removed later, per value).
 */
export function splitOptions(s: string): string[] {
  const items: string[] = [];
  let cur = '';
  let i = 0;
  while (i < s.length) {
    if (cur === '') {
      const m = QUOTED_CONTEXT_START.exec(s.slice(i));
      if (m) {
        const close = s.indexOf('"', i + m[0].length);
        if (close !== -1) {
          cur = s.slice(i, close + 1);
          i = close + 1;
          continue;
        }
      }
    }
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i += 2;
    } else if (c === ',') {
      if (cur !== '') items.push(cur);
      cur = '';
      i++;
    } else {
      cur += c;
      i++;
    }
  }
  if (cur !== '') items.push(cur);
  return items;
}

/**
 * Split a lowerdir= value on unescaped ':' and unescape each piece. Empty
 * pieces are kept (the caller decides whether they are errors).
 */
export function splitLowerdirs(s: string): string[] {
  return splitUnescaped(s, ':').map(unescape);
}
