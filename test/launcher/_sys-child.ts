// Run by test/sys.test.ts inside `unshare --mount --uts --net --propagation private`: exercises
// the namespace syscalls of src/sys and prints what it saw as JSON on stdout.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';

const out: Record<string, unknown> = {};
const dir = process.argv[2];
sys.mount('sysfs', '/sys', 'sysfs', sys.MS_RDONLY); // this network namespace's view (private mount namespace)
sys.sethostname('layerfs-ns-test');
out.hostname = fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim();
out.loBefore = fs.readFileSync('/sys/class/net/lo/flags', 'utf8').trim();
sys.interfaceUp('lo');
out.loAfter = fs.readFileSync('/sys/class/net/lo/flags', 'utf8').trim();
sys.mount('tmpfs', dir, 'tmpfs', sys.MS_NOSUID, 'size=1m,mode=755');
fs.writeFileSync(path.join(dir, 'inside'), 'x');
sys.mount(dir, dir, null, sys.MS_BIND | sys.MS_REC);
sys.mount(null, dir, null, sys.MS_REMOUNT | sys.MS_BIND | sys.MS_RDONLY | sys.MS_NOSUID);
try {
  fs.writeFileSync(path.join(dir, 'ro'), 'x');
} catch (e) {
  out.readOnly = (e as NodeJS.ErrnoException).code;
}
process.chdir(dir);
sys.pivotRoot('.', '.');
sys.umount2('.', sys.MNT_DETACH);
process.chdir('/');
out.root = fs.readdirSync('/');
out.nnpBefore = sys.getNoNewPrivs();
sys.setNoNewPrivs();
out.nnpAfter = sys.getNoNewPrivs();
out.sysAdminBefore = sys.capBoundingHas(21);
sys.capBoundingDrop(21);
out.sysAdminAfter = sys.capBoundingHas(21);
const caps = sys.capget();
sys.capset({ effective: caps.effective & ~(1n << 21n), permitted: caps.permitted & ~(1n << 21n), inheritable: 0n });
out.effHasSysAdmin = (sys.capget().effective >> 21n) & 1n ? true : false;
try {
  sys.sethostname('not-allowed');
} catch (e) {
  out.sethostnameWithoutCap = (e as sys.SysError).code;
}
try {
  sys.execve('/bin/sh', ['sh'], []);
} catch (e) {
  out.execveGone = (e as sys.SysError).code;
}
fs.writeSync(1, JSON.stringify(out) + '\n');
