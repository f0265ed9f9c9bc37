// The errno name an error carries (node:fs, src/sys and the union core all put it in `code`),
// for code anywhere that branches on it. Tiny on purpose: the CLI's start-up imports it.

export function errCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when e is an error with one of the given codes. */
export function isCode(e: unknown, ...codes: string[]): boolean {
  const c = errCode(e);
  return c !== undefined && codes.includes(c);
}
