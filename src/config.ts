// Command-line and mount-option parsing for layerfs, plus validation of the
// resulting configuration against the filesystem.
//
// Two invocation forms are understood (argv is what follows the program name):
//
//   layerfs [-f] [-d] -o lowerdir=L1:L2,upperdir=U,workdir=W MOUNTPOINT
//       (the fuse-overlayfs form; this is how podman's mount_program is run)
//   layerfs SOURCE MOUNTPOINT -o rw,lowerdir=...,dev,suid
//       (the form mount.fuse3 uses when run from mount(8) / fstab)
//
// Option strings follow the fuse-overlayfs escaping rules: a backslash makes
// the next character literal, so "\," does not end an option and "\:" does
// not end a layer path.
//
// parseMountArgs() is pure; validateMountConfig() only reads the filesystem
// (realpath, stat, access, /proc/self/mountinfo) and never changes it.
//
// This module is the public surface; the parts live in src/config/:
//   request.ts   MountRequest, MountConfig, their defaults, ConfigError
//   escape.ts    splitting and unescaping option strings and layer lists
//   options.ts   the table of -o options and what each does
//   argv.ts      parseMountArgs: flags, -o strings and positionals
//   validate.ts  validateMountConfig: the request checked against the filesystem

export { BACKENDS, ConfigError, DEFAULT_SPIN_US, defaultMountRequest } from './config/request.ts';
export type { Backend, MountConfig, MountRequest } from './config/request.ts';
export { splitLowerdirs, splitOptions } from './config/escape.ts';
export { parseMountArgs } from './config/argv.ts';
export { validateMountConfig } from './config/validate.ts';
