// The child process of the crash tests (test/crash/_kill.ts): runs a prepared list of
// filesystem operations through a mount, one after the other, and logs each one to a file
// OUTSIDE the mount only once it returned success (data written by an operation is fsync'd
// before that). Plain JavaScript, so that it starts fast (no tsx).
//
//   node _ops-child.mjs OPS.json LOG
//
// OPS.json: { "root": "<dir in the mount>", "ops": [ {op, ...}, ... ] }
// LOG lines:  "S"            started
//             "B <i>"        operation i begins
//             "D <i>"        operation i returned success (and its data is fsync'd)
//             "M <i>"        operation i is a marker (the kill window starts here)
//             "F <i> <code>" operation i failed; the child stops
//             "E"            all operations done
import * as fs from 'node:fs';
import * as path from 'node:path';

const [opsFile, logFile] = process.argv.slice(2);
const { root, ops } = JSON.parse(fs.readFileSync(opsFile, 'utf8'));
const log = fs.openSync(logFile, 'a');
const say = (s) => fs.writeSync(log, s + '\n');
const p = (rel) => path.join(root, rel);
const C = fs.constants;

function writeAll(flags, rel, data) {
  const fd = fs.openSync(p(rel), flags, 0o644);
  try {
    const b = Buffer.from(data);
    let off = 0;
    while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

say('S');
for (let i = 0; i < ops.length; i++) {
  const o = ops[i];
  if (o.op === 'mark') {
    say(`M ${i}`);
    continue;
  }
  say(`B ${i}`);
  try {
    switch (o.op) {
      case 'create':
        writeAll(C.O_WRONLY | C.O_CREAT | C.O_EXCL, o.p, o.data);
        break;
      case 'overwrite':
        writeAll(C.O_WRONLY | C.O_TRUNC, o.p, o.data);
        break;
      case 'append':
        writeAll(C.O_WRONLY | C.O_APPEND, o.p, o.data);
        break;
      case 'rename':
        fs.renameSync(p(o.from), p(o.to));
        break;
      case 'unlink':
        fs.unlinkSync(p(o.p));
        break;
      case 'mkdir':
        fs.mkdirSync(p(o.p), 0o755);
        break;
      case 'rmdir':
        fs.rmdirSync(p(o.p));
        break;
      default:
        throw Object.assign(new Error(`unknown op ${o.op}`), { code: 'EBADOP' });
    }
  } catch (e) {
    say(`F ${i} ${e.code ?? e.message}`);
    process.exit(1);
  }
  say(`D ${i}`);
}
say('E');
