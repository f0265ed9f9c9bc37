// The arguments of a mount (after the program name, or after the `mount` subcommand): the
// flags -f/--foreground, -d/--debug, -o OPTS (repeatable), --trace FILE, then MOUNTPOINT or
// SOURCE MOUNTPOINT. src/cli/mount.ts tells the three argv forms that mount apart; this parser
// takes what they have in common, byte for byte as fuse-overlayfs takes it.

import { applyOption, type ParseState } from './options.ts';
import { ConfigError, defaultMountRequest, type MountRequest } from './request.ts';
import { q, splitOptions } from './escape.ts';

/**
 * Parse the command line (the arguments after the program name, and after a
 * leading "mount" subcommand if the caller has one). Throws ConfigError.
 */
export function parseMountArgs(argv: string[]): MountRequest {
  const req = defaultMountRequest();
  const optionStrings: string[] = [];
  const positionals: string[] = [];

  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (onlyPositionals || !arg.startsWith('-') || arg === '') {
      positionals.push(arg);
      continue;
    }
    switch (arg) {
      case '--':
        onlyPositionals = true;
        continue;
      case '-f':
      case '--foreground':
        req.foreground = true;
        continue;
      case '-d':
      case '--debug':
        req.debug = true;
        continue;
      case '-o':
        if (i + 1 >= argv.length) throw new ConfigError("layerfs: option '-o' requires an argument");
        optionStrings.push(argv[++i]);
        continue;
      case '--trace':
        if (i + 1 >= argv.length || argv[i + 1] === '') throw new ConfigError("layerfs: option '--trace' requires a FILE");
        req.trace = argv[++i];
        continue;
    }
    if (arg.startsWith('--trace=')) {
      req.trace = arg.slice('--trace='.length);
      if (req.trace === '') throw new ConfigError("layerfs: option '--trace' requires a FILE");
      continue;
    }
    if (arg.startsWith('-o')) {
      optionStrings.push(arg.slice(2));
      continue;
    }
    throw new ConfigError(`layerfs: unknown flag ${q(arg)}`);
  }

  if (positionals.length === 0) throw new ConfigError('layerfs: expected a mountpoint');
  if (positionals.length > 2) {
    throw new ConfigError(`layerfs: too many arguments: ${positionals.slice(2).join(' ')}`);
  }
  let source: string | undefined;
  if (positionals.length === 2) {
    source = positionals[0];
    if (source === '') throw new ConfigError('layerfs: the mount source is empty');
  }
  req.mountpoint = positionals[positionals.length - 1];
  if (req.mountpoint === '') throw new ConfigError('layerfs: the mountpoint is empty');

  const st: ParseState = { req, seen: new Set() };
  for (const s of optionStrings) {
    for (const item of splitOptions(s)) applyOption(st, item);
  }

  if (!st.seen.has('lowerdir')) throw new ConfigError('layerfs: missing lowerdir= option');
  const fsname = st.fsname ?? source;
  if (fsname !== undefined) req.source = fsname;
  return req;
}
