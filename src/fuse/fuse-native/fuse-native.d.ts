// Minimal typing of the parts of fuse-native that the adapter uses.
declare module 'fuse-native' {
  type Cb = (...args: any[]) => void;
  interface FuseOpts {
    force?: boolean;
    mkdir?: boolean;
    debug?: boolean;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    fsname?: string;
    subtype?: string;
    kernelCache?: boolean;
    entryTimeout?: number;
    attrTimeout?: number;
    timeout?: number | false;
    maxRead?: number;
  }
  class Fuse {
    constructor(mnt: string, ops: Record<string, (...args: any[]) => void>, opts?: FuseOpts);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
  }
  export default Fuse;
}
