import type { BigIntStats } from 'node:fs';

/**
 * Stable inode numbers. When every layer lives on one filesystem, the real inode number of the
 * object that serves a path is already unique across the union, so it is used as it is (hard
 * links keep sharing a number, and a rename keeps it). When the layers span filesystems, the
 * layer's position is folded into the high bits so numbers from different filesystems cannot
 * collide.
 */
export class InodeMapper {
  private readonly sameFs: boolean;
  constructor(layerDevs: bigint[]) {
    this.sameFs = new Set(layerDevs).size <= 1;
  }

  ino(layerIndex: number, st: BigIntStats): bigint {
    if (this.sameFs) return st.ino;
    return (BigInt(layerIndex + 1) << 48n) ^ st.ino;
  }
}
