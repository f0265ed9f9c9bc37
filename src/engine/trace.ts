// Tracing the union's decisions (issue 7), the daemon's side: a trace file, a unix socket that
// `layerfs trace` connects to (the client: src/trace.ts), and the records both carry.
//
// The union core reports events only while UnionFs.setTrace() has a sink; the daemon sets one
// while a trace file is open or at least one client is connected, and removes it when the last
// client leaves. Each event becomes one JSON line (toRecord), the same on the socket and in the
// file:
//
//   {"t":"…Z","ev":"lookup","path":"/etc","found":true,"type":"dir","layer":"upper","layers":["upper","lower1"]}
//   {"t":"…Z","ev":"lookup","path":"/nope","found":false}
//   {"t":"…Z","ev":"copyup","path":"/etc/motd","type":"file","from":"lower1","bytes":21,"ms":0.42}
//   {"t":"…Z","ev":"whiteout","path":"/etc/hosts","op":"unlink"}          (also rmdir, rename)
//   {"t":"…Z","ev":"whiteout-removed","path":"/x","op":"create"}          (also mkdir, rename)
//   {"t":"…Z","ev":"opaque","path":"/data","op":"mkdir"}                  (also rename)
//   {"t":"…Z","ev":"exdev","path":"/dir","to":"/dir2"}
//
// Both start with {"ev":"hello","mountpoint":…,"layers":[{"name","dir"}…]} (the file: each time
// a daemon opens it); the socket sends {"ev":"dropped","count":N} when a client that reads too
// slowly missed N events.

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { layerName, toText, type CoreEvent, type Layer, type UnionFs } from '../union/index.ts';

export type TraceRecord = Record<string, unknown> & { ev: string };

/** An event as its JSON record (paths as text, layers by name). */
export function toRecord(ev: CoreEvent, layers: readonly Layer[]): TraceRecord {
  const t = new Date().toISOString();
  const name = (i: number) => layerName(layers, i);
  switch (ev.ev) {
    case 'lookup': {
      const e = ev.entry;
      if (!e) return { t, ev: 'lookup', path: toText(ev.path), found: false };
      return {
        t, ev: 'lookup', path: toText(ev.path), found: true, type: e.type, layer: name(e.layer),
        ...(e.type === 'dir' ? { layers: e.dirLayers.map(name) } : {}),
      };
    }
    case 'copyup':
      return { t, ev: 'copyup', path: toText(ev.path), type: ev.type, from: name(ev.fromLayer), bytes: ev.bytes, ms: Math.round(ev.ms * 100) / 100 };
    case 'exdev':
      return { t, ev: 'exdev', path: toText(ev.path), to: toText(ev.to) };
    default:
      return { t, ev: ev.ev, path: toText(ev.path), op: ev.op };
  }
}

const TYPE_WORD: Record<string, string> = { file: 'file', dir: 'directory', symlink: 'symlink', other: 'special file' };

/** One human line for a record (no time stamp: the JSON has it). */
export function formatRecord(r: TraceRecord): string {
  const label = (s: string) => s.padEnd(9);
  const type = TYPE_WORD[String(r.type)] ?? String(r.type);
  switch (r.ev) {
    case 'hello': {
      const ls = (r.layers as { name: string; dir: string }[]).map((l) => `${l.name} ${l.dir}`).join(', ');
      return `trace of ${r.mountpoint}: ${ls}`;
    }
    case 'lookup':
      if (!r.found) return `${label('lookup')} ${r.path}: not found`;
      if (r.type === 'dir') return `${label('lookup')} ${r.path}: ${type} from ${(r.layers as string[]).join(' + ')}`;
      return `${label('lookup')} ${r.path}: ${type} from ${r.layer}`;
    case 'copyup':
      return `${label('copy-up')} ${r.path}: ${type}${r.type === 'file' ? `, ${r.bytes} bytes,` : ''} from ${r.from} to upper in ${r.ms} ms`;
    case 'whiteout':
      return `${label('whiteout')} ${r.path}: created in upper (${r.op})`;
    case 'whiteout-removed':
      return `${label('whiteout')} ${r.path}: replaced in upper by a new ${r.op === 'mkdir' ? 'directory' : 'object'} (${r.op})`;
    case 'opaque':
      return `${label('opaque')} ${r.path}: marked opaque in upper (${r.op === 'mkdir' ? 'mkdir over a whiteout' : 'moved into a merged directory'})`;
    case 'exdev':
      return `${label('exdev')} ${r.path} -> ${r.to}: refused with EXDEV (a lower has part of the directory; mv copies instead)`;
    case 'dropped':
      return `(${r.count} events dropped: this reader was too slow)`;
    default:
      return JSON.stringify(r);
  }
}

// ------------------------------------------------------------------------------- daemon side

/** Bytes queued for one client beyond which events are dropped (and counted) instead of queued. */
const CLIENT_QUEUE_LIMIT = 4 << 20;

export interface TraceService {
  /** The socket's path, or undefined when it could not be created (then only the file traces). */
  socket?: string;
  close(): void;
}

/**
 * Serve the trace of `ufs`: append to `file` (if given) and stream to every client of a unix
 * socket at `socketPath` (mode 0600, replaced if stale). Events are on only while someone
 * listens. close() is synchronous (for the daemon's exit path): it removes the socket.
 */
export async function startTraceService(
  ufs: UnionFs,
  opts: { mountpoint: string; file?: string; socketPath: string; onSocketError?: (e: Error) => void },
): Promise<TraceService> {
  const fd = opts.file ? fs.openSync(opts.file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600) : undefined;
  const clients = new Map<net.Socket, { dropped: number }>();
  const sink = (ev: CoreEvent): void => {
    const line = JSON.stringify(toRecord(ev, ufs.layers)) + '\n';
    if (fd !== undefined) {
      try {
        fs.writeSync(fd, line);
      } catch {
        // a full disk must not fail the file operation being traced
      }
    }
    for (const [sock, st] of clients) {
      if (sock.writableLength > CLIENT_QUEUE_LIMIT) {
        st.dropped++;
        continue;
      }
      if (st.dropped > 0) {
        sock.write(JSON.stringify({ ev: 'dropped', count: st.dropped }) + '\n');
        st.dropped = 0;
      }
      sock.write(line);
    }
  };
  const hello = JSON.stringify({
    ev: 'hello',
    mountpoint: opts.mountpoint,
    layers: ufs.layers.map((l, i) => ({ name: layerName(ufs.layers, i), dir: toText(l.root) })),
  }) + '\n';
  if (fd !== undefined) fs.writeSync(fd, hello);
  const update = () => ufs.setTrace(fd !== undefined || clients.size > 0 ? sink : undefined);
  update();

  const server = net.createServer((sock) => {
    clients.set(sock, { dropped: 0 });
    sock.on('error', () => {});
    sock.on('close', () => {
      clients.delete(sock);
      update();
    });
    sock.resume(); // nothing is read from clients
    sock.write(hello);
    update();
  });
  let socket: string | undefined = opts.socketPath;
  try {
    fs.mkdirSync(path.dirname(opts.socketPath), { recursive: true, mode: 0o700 });
    fs.rmSync(opts.socketPath, { force: true });
    // Made 0600 after the fact (no umask: the engine serves other mounts meanwhile, and a
    // worker thread may not set it); its directory is the user's alone (0700) all along.
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.socketPath, () => resolve());
    });
    fs.chmodSync(opts.socketPath, 0o600);
    server.unref();
  } catch (e) {
    // Live tracing is a diagnostic: without it the mount still serves (and the file traces).
    opts.onSocketError?.(e as Error);
    socket = undefined;
  }
  let closed = false;
  return {
    socket,
    close() {
      if (closed) return;
      closed = true;
      ufs.setTrace(undefined);
      for (const s of clients.keys()) s.destroy();
      if (socket) {
        server.close();
        fs.rmSync(socket, { force: true });
      }
      if (fd !== undefined) fs.closeSync(fd);
    },
  };
}
