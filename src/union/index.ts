/**
 * The union's public face: what code outside src/union/ may use (the FUSE adapters, the
 * daemon, `layerfs explain` and `trace`, the image diff and pack). Everything else in this
 * folder is the union's own business; its files are named after the overlay rules they hold
 * (see UnionFs in ./unionfs.ts for the map).
 */

// The union filesystem and what its operations take and give.
export { UnionFs, FsError, toAttr } from './unionfs.ts';
export type { Attr, Owner, TimeArg, UnionOptions } from './unionfs.ts';
export type { CopyUpListener } from './stack.ts';
export type { CopyUpEvent } from './copyup.ts';
export type { DirItem } from './readdir.ts';

// Errors as errno names.
export { errCode, fsErr, isCode, toErrno } from './errors.ts';

// Names and paths are byte strings (one char per byte).
export { fromText, toText } from './bytes.ts';

// The trace of the union's decisions, and `layerfs explain`.
export { layerName, type CoreEvent, type TraceSink } from './events.ts';
export {
  explainPath, type Cause, type Explanation, type Has, type LayerVerdict, type Level, type Missing, type Verdict,
} from './explain.ts';

// The pieces a reader of layers on disk needs (explain, image diff and pack): layers, lookup,
// the merged listing, the whiteout formats.
export { Layer, checkPath, joinPath } from './layer.ts';
export { Resolver, type Entry, type EntryType } from './lookup.ts';
export { mergedReaddir } from './readdir.ts';
export { OCI_OPAQUE, OCI_PREFIX, WhiteoutFormat, isWhiteoutStat } from './whiteout.ts';

// Inode flags in their ioctl form (FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR).
export { packFsxattr, unpackFsxattr, type Fsxattr } from './fileattr.ts';
