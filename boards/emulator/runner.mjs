// The chip side of an emulated board: the official MicroPython WebAssembly VM under Node.
//
// The Python host (atsource.emulator.engine) is the rest of the board and the world around it.
// It drives this process with JSON lines on stdin and reads JSON lines on stdout:
//
//   host -> node  {"c":"boot", ...}     cold or soft boot: load flash, run boot.py (+ main.py)
//                 {"c":"chars","d":s}   bytes typed on the serial port (latin-1 string)
//                 {"c":"tick", ...}     deliver pending world events while idle at the REPL
//                 {"c":"exit"}          flush the file system to the host directory and exit
//   node -> host  {"o":s}               console output (latin-1 string)
//                 {"q":op, ...}         a synchronous request from the board layer; the host
//                                       answers with one line, which is handed to Python as is
//                 {"idle":1}            the VM is at the REPL waiting for input
//                 {"fatal":msg}         the VM itself failed (not a Python exception)
//
// Everything here is synchronous: Python calls into JS, JS blocks on the host's answer. That
// keeps a simulated day deterministic and makes the host the only owner of time.
//
// Files: the VM's file system is Emscripten's in-memory one. The flash lives in a host directory
// (--flash); it is copied in at boot and a file is written back when it is closed or flushed, as
// LittleFS makes data durable, so killing this process behaves like a power cut.

import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const i = a.indexOf("=");
    return [a.slice(2, i), a.slice(i + 1)];
  }),
);
const FLASH_DIR = args.flash;
const ROM_DIR = args.rom;
const FS_SIZE = parseInt(args.fs_size || "2097152", 10);
const FS_BLOCK = parseInt(args.fs_block || "4096", 10);
const MACHINE = args.machine || "MicroPython board";
const HEAPSIZE = parseInt(args.heapsize || "1048576", 10);
const HEAP_START = parseInt(args.heap_start || "0", 10);
const MP_ROOT = "/flash";

// ---- protocol ---------------------------------------------------------------------------------
let i2cLog = []; // I2C transfers answered here, not yet told to the host (see i2cLocal)
const inBuf = Buffer.alloc(1 << 16);
let pending = "";
function readLine() {
  for (;;) {
    const nl = pending.indexOf("\n");
    if (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      return line;
    }
    let n;
    try {
      n = fs.readSync(0, inBuf, 0, inBuf.length, null);
    } catch (e) {
      if (e.code === "EAGAIN") {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      if (e.code === "EOF") process.exit(0);
      throw e;
    }
    if (n === 0) process.exit(0); // host went away: power off
    pending += inBuf.toString("latin1", 0, n);
  }
}
function writeAll(s) {
  if (i2cLog.length) {
    // The transfers answered here reach the host's device before anything else does.
    s = JSON.stringify({ i2c: i2cLog }) + "\n" + s;
    i2cLog = [];
  }
  const b = Buffer.from(s, "utf8");
  let off = 0;
  while (off < b.length) {
    try {
      off += fs.writeSync(1, b, off, b.length - off);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}
function send(obj) {
  writeAll(JSON.stringify(obj) + "\n");
}

// Console output is batched and sent before every request and when the VM goes idle, so the
// host can stamp each line with the simulated time it was printed at.
let outChunks = [];
let outLen = 0;
let suppressOutput = false;
let captured = null; // output the board layer reads back itself (micropython.qstr_info())
function onStdout(bytes) {
  if (captured !== null) {
    captured.push(Buffer.from(bytes));
    return;
  }
  if (suppressOutput) return;
  outChunks.push(Buffer.from(bytes));
  outLen += bytes.length;
  if (outLen > 8192) flushOut();
}
function flushOut() {
  if (outLen === 0) return;
  let s = Buffer.concat(outChunks).toString("latin1");
  outChunks = [];
  outLen = 0;
  // The VM's banner names the WebAssembly port; a board names itself.
  s = s.split("; JS with Emscripten").join("; " + MACHINE);
  send({ o: s });
}

// ---- errno and flash durability -----------------------------------------------------------------
// Emscripten's errno numbers (WASI) differ from MicroPython's (which equal Linux's, as LittleFS
// raises them). Syscalls return -errno and WASI fd_* calls return errno: translate both, so
// `e.errno == errno.ENOENT` holds in firmware and mpremote reads the numbers it expects.
const WASI_TO_MP = {
  63: 1, 44: 2, 71: 3, 27: 4, 29: 5, 60: 6, 1: 7, 45: 8, 8: 9, 12: 10, 6: 11, 48: 12, 2: 13,
  21: 14, 10: 16, 20: 17, 75: 18, 43: 19, 54: 20, 31: 21, 28: 22, 41: 23, 33: 24, 59: 25,
  74: 26, 22: 27, 51: 28, 70: 29, 69: 30, 34: 31, 64: 32, 18: 33, 68: 34, 55: 39, 37: 36,
  32: 40, 52: 38, 138: 95,
};
const mapErr = (e) => WASI_TO_MP[e] ?? e;
const E_NOSPC = 51; // WASI numbering: thrown inside the FS, translated on the way out

let Module = null; // the current VM instance's Emscripten module
let flashUsed = 0; // bytes of flash in use, in whole blocks, as LittleFS would count them

function hostPath(p) {
  // An Emscripten path under /flash -> the host flash directory; other paths are not flash.
  if (p !== MP_ROOT && !p.startsWith(MP_ROOT + "/")) return null;
  return path.join(FLASH_DIR, p.slice(MP_ROOT.length));
}
function persistFile(p) {
  const hp = hostPath(p);
  if (!hp) return;
  const data = Module.FS.readFile(p);
  fs.mkdirSync(path.dirname(hp), { recursive: true });
  const tmp = hp + ".~atsource";
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, hp); // atomic on the host: a crash never leaves half a file
}
function walkUsage(dir) {
  let used = FS_BLOCK; // every directory costs a block (LittleFS metadata pair, simplified)
  for (const name of Module.FS.readdir(dir)) {
    if (name === "." || name === "..") continue;
    const p = dir + "/" + name;
    const st = Module.FS.stat(p);
    if (Module.FS.isDir(st.mode)) used += walkUsage(p);
    else used += Math.max(1, Math.ceil(st.size / FS_BLOCK)) * FS_BLOCK;
  }
  return used;
}
function refreshUsage() {
  flashUsed = walkUsage(MP_ROOT);
}

function wrapImports(imports) {
  const done = new Set(); // env and wasi_snapshot_preview1 may be the same object
  for (const ns of Object.keys(imports)) {
    const o = imports[ns];
    if (done.has(o)) continue;
    done.add(o);
    for (const k of Object.keys(o)) {
      const f = o[k];
      if (typeof f !== "function") continue;
      if (k.startsWith("__syscall_")) {
        const after = SYSCALL_HOOKS[k];
        o[k] = function (...a) {
          const pathArg = after ? syscallPath(k, a) : null;
          if (k === "__syscall_openat" && pathArg && newFileWontFit(pathArg[0], a[2])) {
            return -mapErr(E_NOSPC);
          }
          const r = f.apply(this, a);
          if (r < 0) return -mapErr(-r);
          if (after && pathArg) after(pathArg, a);
          return r;
        };
      } else if (k.startsWith("fd_")) {
        o[k] = function (...a) {
          if (k === "fd_write") {
            const err = checkSpace(a[0], a[1], a[2]);
            if (err) return mapErr(err);
          }
          const stream = k === "fd_close" || k === "fd_sync" ? streamOf(a[0]) : null;
          const r = f.apply(this, a);
          if (!r && stream && stream.path && (stream.flags & 3) !== 0) {
            persistFile(stream.path);
            refreshUsage();
          }
          return r > 0 ? mapErr(r) : r || 0;
        };
      }
    }
  }
  return imports;
}
function streamOf(fd) {
  try {
    return Module.FS.getStream(fd);
  } catch {
    return null;
  }
}
function checkSpace(fd, iov, iovcnt) {
  const stream = streamOf(fd);
  if (!stream || !stream.path || !hostPath(stream.path)) return 0;
  let n = 0;
  const mem = new DataView(Module.HEAPU8.buffer); // the build exports only HEAPU8
  for (let i = 0; i < iovcnt; i++) n += mem.getUint32(iov + 8 * i + 4, true);
  const size = stream.node.usedBytes ?? 0;
  const pos = stream.flags & 0x400 ? size : stream.position; // O_APPEND writes at the end
  const end = Math.max(size, pos + n);
  const grow = Math.ceil(end / FS_BLOCK) - Math.max(1, Math.ceil(size / FS_BLOCK));
  if (grow > 0 && flashUsed + grow * FS_BLOCK > FS_SIZE) return E_NOSPC;
  if (grow > 0) flashUsed += grow * FS_BLOCK;
  return 0;
}
// A new file takes a block of its own (LittleFS: its entry and first data need room in the
// metadata pair, which a full file system cannot give), so creating one on a full flash is
// ENOSPC, as on a board: the counter's and the outbox's no-space paths are reachable.
function newFileWontFit(p, flags) {
  if (!(flags & O_CREAT) || !hostPath(p)) return false;
  try {
    Module.FS.stat(p);
    return false; // exists: opening it takes nothing new
  } catch {
    return flashUsed + FS_BLOCK > FS_SIZE;
  }
}
// Metadata changes (unlink, rename, mkdir, rmdir) are atomic and durable on LittleFS.
function syscallPath(k, a) {
  const FS = Module.FS;
  const get = (dirfd, p) => {
    const s = Module.UTF8ToString(p);
    return s.startsWith("/") ? s : path.posix.join(FS.cwd(), s);
  };
  if (k === "__syscall_renameat") return [get(a[0], a[1]), get(a[2], a[3])];
  if (k === "__syscall_rmdir") return [get(-100, a[0])];
  return [get(a[0], a[1])];
}
const O_CREAT = 0x40;
const SYSCALL_HOOKS = {
  __syscall_openat: ([p], a) => {
    // LittleFS commits a new file's directory entry at open (empty); data waits for a sync.
    const hp = hostPath(p);
    if (hp && a[2] & O_CREAT && !fs.existsSync(hp)) {
      fs.mkdirSync(path.dirname(hp), { recursive: true });
      fs.writeFileSync(hp, "");
      flashUsed += FS_BLOCK; // charged now, not at its first write
    }
  },
  __syscall_unlinkat: ([p]) => {
    const hp = hostPath(p);
    if (hp) fs.rmSync(hp, { recursive: true, force: true });
    refreshUsage();
  },
  __syscall_rmdir: ([p]) => {
    const hp = hostPath(p);
    if (hp) fs.rmSync(hp, { recursive: true, force: true });
    refreshUsage();
  },
  __syscall_mkdirat: ([p]) => {
    const hp = hostPath(p);
    if (hp) fs.mkdirSync(hp, { recursive: true });
    refreshUsage();
  },
  __syscall_renameat: ([from, to]) => {
    const hf = hostPath(from);
    const ht = hostPath(to);
    if (hf && ht && fs.existsSync(hf)) {
      fs.rmSync(ht, { recursive: true, force: true });
      fs.renameSync(hf, ht);
    } else if (ht) {
      // Renamed from a file that was never made durable: persist what the VM holds now.
      const st = Module.FS.stat(to);
      if (!Module.FS.isDir(st.mode)) persistFile(to);
    }
    refreshUsage();
  },
};

// The VM's setjmp/longjmp (nlr_push, about one per Python call) goes through Emscripten's
// invoke_* trampolines, which in this build look the target up in the function table twice
// (once for an assertion that the table has not changed) and wrap every export in assertions:
// a quarter of a busy day's CPU in the runner. These do the same (the table is fixed after
// start-up, which that assertion checks), with the table cached and the raw exports.
let wasmExports = null;
const tableCache = [];
function tableEntry(i) {
  return tableCache[i] || (tableCache[i] = wasmExports.__indirect_function_table.get(i));
}
function unwound(e, sp) {
  // A longjmp (Emscripten's EmscriptenSjLj, an EmscriptenEH) lands here; anything else goes on.
  wasmExports._emscripten_stack_restore(sp);
  for (let p = e !== null && typeof e === "object" ? Object.getPrototypeOf(e) : null; p; ) {
    if (p.constructor && p.constructor.name === "EmscriptenEH") {
      wasmExports.setThrew(1, 0);
      return;
    }
    p = Object.getPrototypeOf(p);
  }
  throw e;
}
function fastInvoke(name) {
  const ret = name[7] === "i";
  return function (index, ...a) {
    const sp = wasmExports.emscripten_stack_get_current();
    try {
      const r = tableEntry(index)(...a);
      if (ret) return r;
    } catch (e) {
      unwound(e, sp);
    }
  };
}
const FAST_INVOKE = {
  invoke_ii: (index, a1) => {
    const sp = wasmExports.emscripten_stack_get_current();
    try {
      return tableEntry(index)(a1);
    } catch (e) {
      unwound(e, sp);
    }
  },
  invoke_iii: (index, a1, a2) => {
    const sp = wasmExports.emscripten_stack_get_current();
    try {
      return tableEntry(index)(a1, a2);
    } catch (e) {
      unwound(e, sp);
    }
  },
  invoke_iiii: (index, a1, a2, a3) => {
    const sp = wasmExports.emscripten_stack_get_current();
    try {
      return tableEntry(index)(a1, a2, a3);
    } catch (e) {
      unwound(e, sp);
    }
  },
  invoke_vi: (index, a1) => {
    const sp = wasmExports.emscripten_stack_get_current();
    try {
      tableEntry(index)(a1);
    } catch (e) {
      unwound(e, sp);
    }
  },
  invoke_vii: (index, a1, a2) => {
    const sp = wasmExports.emscripten_stack_get_current();
    try {
      tableEntry(index)(a1, a2);
    } catch (e) {
      unwound(e, sp);
    }
  },
};
function fastTrampolines(imports) {
  for (const ns of Object.keys(imports)) {
    const o = imports[ns];
    for (const k of Object.keys(o)) {
      if (k.startsWith("invoke_") && typeof o[k] === "function") o[k] = FAST_INVOKE[k] || fastInvoke(k);
    }
  }
  return imports;
}

const origInstantiate = WebAssembly.instantiate;
WebAssembly.instantiate = function (bin, imports) {
  return origInstantiate.call(this, bin, fastTrampolines(wrapImports(imports))).then((r) => {
    wasmExports = (r.instance || r).exports;
    return r;
  });
};
const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");

// ---- flash image in and out ---------------------------------------------------------------------
function copyIn(hostDir, vmDir) {
  const FS = Module.FS;
  for (const ent of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (ent.name.endsWith(".~atsource")) continue; // an interrupted host write: never durable
    const hp = path.join(hostDir, ent.name);
    const vp = vmDir + "/" + ent.name;
    if (ent.isDirectory()) {
      FS.mkdir(vp);
      copyIn(hp, vp);
    } else if (ent.isFile()) {
      FS.writeFile(vp, fs.readFileSync(hp));
    }
  }
}
function copyOut(vmDir, hostDir) {
  // Soft reset and clean exit: every file is closed, so the whole image becomes durable.
  const FS = Module.FS;
  const seen = new Set();
  fs.mkdirSync(hostDir, { recursive: true });
  for (const name of FS.readdir(vmDir)) {
    if (name === "." || name === "..") continue;
    seen.add(name);
    const vp = vmDir + "/" + name;
    const hp = path.join(hostDir, name);
    if (FS.isDir(FS.stat(vp).mode)) copyOut(vp, hp);
    else persistFile(vp);
  }
  for (const name of fs.readdirSync(hostDir)) {
    if (!seen.has(name)) fs.rmSync(path.join(hostDir, name), { recursive: true, force: true });
  }
}

// ---- the VM instance ----------------------------------------------------------------------------
let mp = null;
let replMode = "friendly";

// Lookahead (docs/emulator.md "The virtual clock"). The Python side asks the same way and gets
// the same answers whatever the span: one answer per sleep, with every event due during it.
// Here, between the VM and the host, the world's events the host dealt ahead of the board's
// clock wait in time order (outside the Python heap: a radio's buffer is not the firmware's
// memory), and a sleep that ends before the horizon is answered without a round trip. Keeping
// Python's side identical matters: the heap is measured exactly, and even what a conservative
// collector keeps pinned depends on what was allocated, so the Python side must not notice.
// Each event is [kind, ms, us, ...], times since boot.
let ahead = [];
let hzMs = 0; // the horizon: nothing happens in the world before it but what is queued
let hzUs = 0;
let peakSent = -1; // the largest live heap reported to the host
let heapMax = -1; // live heap measurements not yet reported: their maximum and count
let heapCount = 0;

// The live heap, counted here after each step from the collector's own allocation table: the
// figure gc.mem_alloc() gives (py/gc.c gc_info: the blocks whose entry is HEAD or TAIL, 16
// bytes each), without the VM walking the table entry by entry at every step (55 us on a
// pico-w's heap, a sixth of an idle board's day; this loop over the table's bytes, a few us).
// The table's areas are found once at boot, and the count checked there against the VM's own.
const BLOCK_BYTES = 16;
const ATB_USED = new Uint8Array(256); // per table byte (four 2-bit entries): entries in use
for (let b = 0; b < 256; b++) {
  for (let k = 0; k < 8; k += 2) ATB_USED[b] += ((b >> k) & 3) === 1 || ((b >> k) & 3) === 2;
}
let heapArea = 0; // address of MP_STATE_MEM(area), the first of the heap's areas
let heapBase = 0; // the board layer's own heap (rom/_board.py baseline)
let qcharge = 0;
let ramBudget = Infinity; // the board's ram_budget (boot config)
let live = -1; // the live heap when the last step returned (stepped entry), else -1

// mp_state_mem_area_t (py/mpstate.h, split heap, finaliser and weak references): next, ATB
// start, ATB bytes, FTB start, WTB start, pool start, pool end, ... The first area lives in the
// VM's static data and covers the HEAPSIZE bytes mp_js_init() allocated; its pool is the
// table's entries times 16 bytes at the end of them.
function findHeapArea() {
  const w = new Uint32Array(Module.HEAPU8.buffer);
  const top = Math.min(w.length - 8, 1 << 20);
  for (let k = 1; k < top; k++) {
    const start = w[k];
    const len = w[k + 1];
    const end = w[k + 5];
    if (len && start && w[k + 4] === end - len * 4 * BLOCK_BYTES && Math.abs(end - start - HEAPSIZE) < 32) {
      return (k - 1) * 4;
    }
  }
  throw new Error("the VM's heap table was not found (see findHeapArea)");
}

let heapWords = null; // a word view of the VM's memory, made again only when the memory grows
function heapUsed() {
  const mem = Module.HEAPU8;
  if (heapWords === null || heapWords.buffer !== mem.buffer) heapWords = new Uint32Array(mem.buffer);
  const w = heapWords;
  let used = 0;
  for (let a = heapArea >> 2; a; a = w[a] >> 2) {
    for (let i = w[a + 1], end = i + w[a + 2]; i < end; i++) used += ATB_USED[mem[i]];
  }
  return used * BLOCK_BYTES;
}

// After each step. Counted as it stands, the heap includes what the step threw away, so the
// count bounds the live heap from above: when that is no more than the peak so far, the step
// cannot have set a new peak and no collection is needed (on an idle board's day, most
// steps). Otherwise the board layer collects (at the top level, as the port does) and the
// count is exact. So the peak is exact with a collection every few steps instead of each.
// Above the RAM budget the count is always made exact: what the host allows above it (a TLS
// session's buffers, engine.py _heap_sample) comes and goes, the budget check needs the truth.
function heapSample() {
  let h = heapUsed() - heapBase + qcharge;
  if ((h > peakSent && h > heapMax) || h > ramBudget) {
    fns.collect();
    h = heapUsed() - heapBase + qcharge;
  }
  live = h;
  if (h > heapMax) heapMax = h;
  heapCount++;
}

function notAfter(ev, ms, us) {
  return ev[1] < ms || (ev[1] === ms && ev[2] <= us);
}

function takeDue(ms, us) {
  let i = 0;
  while (i < ahead.length && notAfter(ahead[i], ms, us)) i++;
  if (i === 0) return [];
  const due = ahead.slice(0, i);
  ahead = ahead.slice(i);
  return due;
}

// BLE advertising reports cross from the host in runs, ["a", ms, us, hex of packed records]
// (timed as the first; the record: engine.py ADV_HEADER, then the address and the data). Here
// each report is one queue entry, ["a", ms, us, record bytes], so a run can be cut at any
// report; on the way to Python consecutive reports are joined into one run again, which the
// board layer decodes in place (rom/_vbluetooth.py _adv).
const ADV_HEAD = 10;
function unpack(evs) {
  let out = null;
  for (let i = 0; i < evs.length; i++) {
    const ev = evs[i];
    if (ev[0] !== "a") {
      if (out) out.push(ev);
      continue;
    }
    if (!out) out = evs.slice(0, i);
    const b = Buffer.from(ev[3], "hex");
    for (let off = 0; off < b.length; ) {
      const end = off + ADV_HEAD + 6 + b[off + 9];
      out.push(["a", b.readUInt32LE(off), b.readUInt16LE(off + 4), b.subarray(off, end)]);
      off = end;
    }
  }
  return out || evs;
}
// To Python a run goes as ["a", ms, us, k]: the board layer asks for run k (emu.adv_data)
// when it decodes it, and gets it written into its radio buffer, a bytes object allocated
// before the heap baseline (rom/_vbluetooth.py), so the firmware's heap sees no blob. Runs
// are cut to fit the buffer.
const RADIO_BUF = 4096;
let radioItems = 0; // address of the radio buffer's bytes in the VM's memory
let runSeq = 0;
const runs = new Map(); // k -> the run's records, until the board layer takes it
function pack(evs) {
  let out = null;
  let run = null;
  let parts = null;
  let size = 0;
  const close = () => {
    runs.set(run[3], Buffer.concat(parts));
    run = null;
  };
  for (let i = 0; i < evs.length; i++) {
    const ev = evs[i];
    if (ev[0] === "a") {
      if (!out) out = evs.slice(0, i);
      if (run && size + ev[3].length > RADIO_BUF) close();
      if (!run) {
        out.push((run = ["a", ev[1], ev[2], runSeq++]));
        parts = [];
        size = 0;
      }
      parts.push(ev[3]);
      size += ev[3].length;
      continue;
    }
    if (run) close();
    if (out) out.push(ev);
  }
  if (run) close();
  return out || evs;
}

function enqueue(evs) {
  if (!evs.length) return;
  const last = ahead[ahead.length - 1];
  ahead = ahead.concat(evs);
  if (last && !notAfter(last, evs[0][1], evs[0][2])) {
    ahead.sort((a, b) => a[1] - b[1] || a[2] - b[2]); // a new scan's adverts, merged in (stable)
  }
}

// I2C without a round trip (docs/emulator.md "I2C"). With lookahead, the host's answer to a
// transfer may carry a snapshot of the device: its registers and pointer, and, while a forced
// conversion runs, when it ends and the data registers and ctrl_meas it leaves behind (the
// BME280 model: host_tools/atsource/emulator/bme280_model.py). Until the horizon, and until
// the part next leaves the bus, the device's next transfers are answered here when they only
// read it or write ctrl_hum or config (the host model does nothing else on those), byte for
// byte as the host would at that time; each goes into i2cLog, which reaches the host before
// any other message, so the host's model replays them at their own times and stays exact.
// Anything else (a ctrl_meas write starts a conversion of the environment at that instant, a
// soft reset, normal mode) goes to the host.
const REG_RESET = 0xe0;
const REG_CTRL_HUM = 0xf2;
const REG_STATUS = 0xf3;
const REG_CTRL_MEAS = 0xf4;
const REG_CONFIG = 0xf5;
const REG_DATA = 0xf7;
const i2cSnaps = new Map(); // "bus/addr" -> snapshot

function before(t, m, u) {
  return m < t[0] || (m === t[0] && u < t[1]);
}

function i2cTakeSnapshot(q, tail) {
  const key = q.b + "/" + q.a;
  if (tail === undefined) {
    i2cSnaps.delete(key);
    return;
  }
  const w = JSON.parse(tail);
  i2cSnaps.set(key, {
    regs: Buffer.from(w.r, "hex"),
    p: w.p,
    e: w.e,
    d: w.d === undefined ? null : Buffer.from(w.d, "hex"),
    m: w.m,
    v: w.v,
    u: w.u,
  });
}

function i2cLocal(q) {
  const s = i2cSnaps.get(q.b + "/" + q.a);
  if (!s) return null;
  const [m, u] = q.now;
  if (!before([hzMs, hzUs], m, u) || (s.u && !before(s.u, m, u))) return null;
  const w = Buffer.from(q.w, "hex");
  // A write sets the pointer, then comes in (data, register, data, ...) pairs.
  let p = w.length ? w[0] : s.p;
  for (let i = 1, r = p; i < w.length; i += 2) {
    if (r === REG_RESET || r === REG_CTRL_MEAS) return null;
    if (i + 1 < w.length) r = w[i + 1];
  }
  for (let i = 1; i < w.length; i += 2) {
    if (p === REG_CTRL_HUM) s.regs[p] = w[i] & 0x07;
    else if (p === REG_CONFIG) s.regs[p] = w[i] & 0xfd;
    if (i + 1 < w.length) p = w[i + 1];
  }
  const n = q.r;
  const out = Buffer.alloc(n);
  if (n) {
    const done = s.e !== undefined && !before(s.e, m, u);
    const status = (s.e !== undefined && !done ? 0x08 : 0) | (s.v && before(s.v, m, u) ? 0x01 : 0);
    for (let i = 0; i < n; i++) {
      const r = (p + i) & 0xff;
      if (r === REG_STATUS) out[i] = status;
      else if (done && r >= REG_DATA && r < REG_DATA + 8) out[i] = s.d[r - REG_DATA];
      else if (done && r === REG_CTRL_MEAS) out[i] = s.m;
      else out[i] = s.regs[r];
    }
    p = (p + n) & 0xff;
  }
  if (w.length || n) s.p = p;
  i2cLog.push([q.b, q.a, m, u, q.w, n]);
  const cost = Math.floor(((1 + w.length + (n ? 1 + n : 0)) * 9 * 1000000) / Math.max(1, q.f ?? 100000));
  return '[1, "' + out.toString("hex") + '", ' + cost + "]";
}

// Ask the host; "!" (an interrupt pending) is passed on to the VM.
function ask(line, interrupted) {
  flushOut();
  sendInterruptChar();
  writeAll(line + "\n");
  const answer = readLine();
  if (answer.charCodeAt(0) === 33) {
    Module._mp_sched_keyboard_interrupt();
    if (interrupted) interrupted.hit = true;
    return answer.slice(1);
  }
  if (answer === "X") {
    // The host ends the run here (duration reached or power off): make flash durable as a
    // clean shutdown would, then stop without returning to Python.
    finish(true);
  }
  return answer;
}

// A sleep until (tm, tu) from (nm, nu), "sleep" or "lightsleep", the watchdog due at wd (ms
// since boot, or -1): [ms, us, events] reaching it (or less, if interrupted).
function sleep(kind, tm, tu, nm, nu, wd) {
  const events = [];
  let now = [nm, nu];
  for (;;) {
    const withinHorizon = tm < hzMs || (tm === hzMs && tu <= hzUs);
    const watchdogOk = wd < 0 || tm < wd || (tm === wd && tu === 0);
    if (withinHorizon && watchdogOk && heapMax <= peakSent) {
      events.push(...takeDue(tm, tu));
      return [tm, tu, pack(events)];
    }
    const fwd = { q: kind, ms: tm, us: tu, now };
    if (wd >= 0) fwd.wd = wd;
    if (heapCount) {
      fwd.h = heapMax;
      fwd.hn = heapCount;
      peakSent = Math.max(peakSent, heapMax);
      heapMax = -1;
      heapCount = 0;
    }
    const interrupted = { hit: false };
    const r = JSON.parse(ask(JSON.stringify(fwd), interrupted));
    if (r.length > 5) {
      [hzMs, hzUs] = [r[3], r[4]];
      if (r[5]) enqueue(unpack(JSON.parse(r[5])));
    }
    events.push(...takeDue(r[0], r[1]), ...unpack(r[2]));
    now = [r[0], r[1]];
    if (interrupted.hit || r[0] > tm || (r[0] === tm && r[1] >= tu)) {
      return [r[0], r[1], pack(events)];
    }
  }
}

const emu = {
  // capture(1) holds back the VM's output; capture(0) ends that and returns what was held.
  capture(on) {
    if (on) {
      captured = [];
      return "";
    }
    const text = captured === null ? "" : Buffer.concat(captured).toString("latin1");
    captured = null;
    return text;
  },
  // The board layer's sleep (rom/_board.py sleep_until): 0 when it reached its end with nothing
  // to deliver, so that the Python side allocates nothing; else [ms, us, events] as JSON.
  sleep(kind, tm, tu, nm, nu, wd) {
    const r = sleep(kind, tm, tu, nm, nu, wd);
    if (r[0] === tm && r[1] === tu && r[2].length === 0) return 0;
    return JSON.stringify(r);
  },
  // The live heap when the last step returned (stepped entry), else -1.
  live() {
    return live;
  },
  // Bytes of qstr pool a port would hold for the firmware's names (rom/_board.py _qstr_charge).
  qcharge(n) {
    qcharge = n;
  },
  req(line, interrupted) {
    const q = JSON.parse(line);
    switch (q.q) {
      case "scan": {
        // A scan stopped or replaced now: its adverts queued from now on never arrive (nor
        // its end); the host deals the new scan's own events up to the horizon.
        const [ms, us] = q.now;
        ahead = ahead.filter(
          (ev) => ev[0] !== "d" && (ev[0] !== "a" || ev[1] < ms || (ev[1] === ms && ev[2] < us)),
        );
        enqueue(unpack(JSON.parse(ask(line, interrupted))));
        return "[]";
      }
      case "events":
      case "io": {
        const answer = ask(line, interrupted);
        if (answer.charCodeAt(0) !== 91) return answer;
        if (!ahead.length && answer.indexOf('["a",') < 0) return answer;
        // [ms, us, events, ...]: what was queued and is due comes first
        const r = JSON.parse(answer);
        r[2] = pack(takeDue(r[0], r[1]).concat(unpack(r[2])));
        return JSON.stringify(r);
      }
      case "i2c": {
        const local = i2cLocal(q);
        if (local !== null) return local;
        const answer = ask(line, interrupted);
        const tab = answer.indexOf("\t");
        i2cTakeSnapshot(q, tab < 0 ? undefined : answer.slice(tab + 1));
        return tab < 0 ? answer : answer.slice(0, tab);
      }
      default:
        return ask(line, interrupted); // answers without time (a pin level, an ADC...)
    }
  },
  // Bytes cross as hex strings both ways: strings convert by value, while Python bytes would
  // arrive as proxies that keep the objects alive on the Python heap until JS collects them.
  aes_ecb(key, data, encrypt) {
    const k = u8(key);
    const algo = k.length === 32 ? "aes-256-ecb" : "aes-128-ecb";
    const c = encrypt ? crypto.createCipheriv(algo, k, null) : crypto.createDecipheriv(algo, k, null);
    c.setAutoPadding(false);
    return Buffer.concat([c.update(u8(data)), c.final()]).toString("hex");
  },
  aes_cbc(key, iv, data, encrypt) {
    const k = u8(key);
    const algo = k.length === 32 ? "aes-256-cbc" : "aes-128-cbc";
    const c = encrypt ? crypto.createCipheriv(algo, k, u8(iv)) : crypto.createDecipheriv(algo, k, u8(iv));
    c.setAutoPadding(false);
    return Buffer.concat([c.update(u8(data)), c.final()]).toString("hex");
  },
  // The radio: run k of advertising reports written into the board layer's buffer (see
  // pack); its length. At boot, -id(buffer) says where the buffer is: a bytes object, whose
  // length and data pointer follow its type and hash (py/objstr.h mp_obj_str_t, wasm32).
  adv_data(k) {
    const mem = Module.HEAPU8;
    if (k < 0) {
      const dv = new DataView(mem.buffer);
      if (dv.getUint32(-k + 8, true) !== RADIO_BUF) throw new Error("radio buffer not found");
      radioItems = dv.getUint32(-k + 12, true);
      return 0;
    }
    const b = runs.get(k);
    runs.delete(k);
    mem.set(b, radioItems);
    return b.length;
  },
  // Bytes the VM's stdin already took from the host but the program has not read yet
  // (select.poll must see them as ready).
  stdin_pending() {
    return stdinBuf.length;
  },
  flash_usage() {
    refreshUsage();
    return flashUsed;
  },
};

// The serial port's interrupt character (micropython.kbd_intr: 3, or -1 when a program such as
// mpremote mount takes Ctrl-C as data). The host sees the port's bytes first, so it is told
// whenever the VM's value changes.
let lastInterruptChar = 3;
function sendInterruptChar() {
  const c = Module._mp_hal_get_interrupt_char();
  if (c !== lastInterruptChar) {
    lastInterruptChar = c;
    send({ kbd: c });
  }
}

// sys.stdin is the board's serial port: the VM's own stdin (fd 0, read by sys.stdin.read,
// readinto, readline) asks the host for the bytes typed on the port, blocking until some
// arrive, as a board's stdio does (shared/runtime/sys_stdio_mphal.c).
let stdinBuf = Buffer.alloc(0);
function stdinChar() {
  while (stdinBuf.length === 0) {
    const interrupted = { hit: false };
    const ans = emu.req('{"q":"stdin","n":256}', interrupted);
    stdinBuf = Buffer.from(ans, "hex");
    if (stdinBuf.length === 0 && interrupted.hit) return null; // Ctrl-C: let it be raised
  }
  const c = stdinBuf[0];
  stdinBuf = stdinBuf.subarray(1);
  return c;
}

function u8(x) {
  return Buffer.from(x, "hex");
}

function finish(flush) {
  if (flush && Module) copyOut(MP_ROOT, FLASH_DIR);
  flushOut();
  process.exit(0);
}

let fns = null; // the board layer's functions that JavaScript calls (see boot)

function runPy(code) {
  try {
    mp.runPython(code);
    return null;
  } catch (e) {
    if (!e || e.name !== "PythonError") throw e;
    // An exception that crossed JS on its way out: print it as the board would.
    onStdout(Buffer.from(e.message.replace(/\n?$/, "\n")));
    return e.message;
  }
}

// Where the VM's heap lies (docs/emulator.md, "Where the heap lies"). MicroPython's collector
// is conservative: any word that equals the address of a block's head keeps that block. Left
// to itself the VM's heap sits at the bottom of WebAssembly memory (about 0x33000-0x81000), so
// plain small numbers, two 16-bit qstr numbers side by side in a module's qstr table, a
// reading, a timestamp, look like pointers there, and a dead object whose address one of them
// matches stays alive with all it references (measured: 2 to 20 KB, depending only on the
// layout). On a board the heap is at 0x3FFxxxxx (esp32) or 0x2001xxxx (rp2), where such
// numbers never point. So the heap is put where the board has it: loadMicroPython() calls
// mp_js_init() (which mallocs the heap) right after it publishes the module as
// globalThis.Module, and one allocation made at that moment, never touched, moves the heap up.
// Untouched WebAssembly pages cost no RAM. tests/emulated/test_heap_place.py checks the result.
let heapPlaced = false;
function placeHeap(start) {
  if (!start) return;
  Object.defineProperty(globalThis, "Module", {
    configurable: true,
    set(m) {
      Object.defineProperty(globalThis, "Module", { value: m, writable: true, configurable: true });
      const p = m._malloc(16);
      if (start > p + 4096 && m._malloc(start - p - 4096) === 0) throw new Error("cannot place the heap");
      m._free(p);
      heapPlaced = true;
    },
  });
}

async function boot(cmd) {
  placeHeap(HEAP_START);
  mp = await loadMicroPython({
    heapsize: HEAPSIZE,
    pystack: 4096,
    linebuffer: false,
    stdin: stdinChar,
    stdout: onStdout,
    stderr: onStdout,
  });
  if (HEAP_START && !heapPlaced) throw new Error("the VM's heap was not placed (see placeHeap)");
  Module = mp._module;
  const FS = Module.FS;
  FS.mkdir(MP_ROOT);
  copyIn(FLASH_DIR, MP_ROOT);
  refreshUsage();
  FS.mkdir("/rom");
  copyIn(ROM_DIR, "/rom");
  FS.chdir(MP_ROOT);
  mp.registerJsModule("_emu", emu);
  const cfg = JSON.stringify(cmd.cfg).replace(/\\/g, "\\\\").replace(/'/g, "\\'");
  const err = runPy(
    "import sys\nsys.path.insert(0, '/rom')\nimport _board\n" +
      `_board.setup('${cfg}')\n`,
  );
  if (err) {
    send({ fatal: "board layer failed to start: " + err });
    process.exit(3);
  }
  // Every function of the board layer that JavaScript calls is looked up once, here, and
  // kept for the life of the process: each lookup through the module's proxy makes a bound
  // method on the Python heap, held in the port's proxy table until V8 finalises the proxy
  // (at a moment of its choosing, and never during the synchronous stepped loop).
  const board = mp.pyimport("_board");
  fns = {
    baseline: board.baseline,
    step_setup: board.step_setup,
    step: board.step,
    collect: board.collect,
  };
  ramBudget = cmd.cfg.ram_budget ?? Infinity;
  heapArea = findHeapArea();
  const counted = heapUsed();
  heapBase = fns.baseline();
  if (counted !== heapBase) throw new Error(`the VM's heap counted ${counted}, gc says ${heapBase}`);
  replMode = cmd.mode === "raw" ? "raw" : "friendly";
  // boot.py always runs; main.py only when the REPL comes up in friendly mode, as on a board.
  runPy("_board.run_file('boot.py', globals())");
  if (replMode === "friendly") {
    if (cmd.entry) stepped(board, cmd.entry);
    else runPy("_board.run_file('main.py', globals())");
  }
  runPy("_board.at_repl()");
  suppressOutput = replMode === "raw";
  mp.replInit();
  suppressOutput = false;
  if (replMode === "raw") processChars("\x01");
}

// The firmware's main loop, driven from here one step at a time: each call returns to the top
// level, the only place this engine collects garbage, so live heap is measured exactly and
// memory stays bounded over a long run. Equivalent to `while True: idle(app.step())`.
function stepped(board, entry) {
  const { step_setup, step } = fns;
  if (!step_setup(entry)) return;
  while (step()) heapSample();
  live = -1; // at the REPL, gc counts again
}

function processChars(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 1) replMode = "raw";
    else if (c === 2) replMode = "friendly";
    const r = mp.replProcessChar(c);
    if (r !== 0) reboot("soft", s.slice(i + 1)); // Ctrl-D at an empty prompt
  }
}

// Every reset restarts this process: the host respawns it and boots again. A soft reset closes
// every file first (as MicroPython's finalisers do), so the whole image becomes durable; a hard
// reset, a watchdog or a power cut does not get here at all.
function reboot(kind, rest) {
  if (kind === "soft") {
    copyOut(MP_ROOT, FLASH_DIR);
    onStdout(Buffer.from("MPY: soft reboot\r\n"));
  }
  flushOut();
  send({ reboot: kind, mode: replMode, rest: rest || "" });
  process.exit(0);
}
emu.soft_reset = () => reboot("soft", "");

async function main() {
  for (;;) {
    const line = readLine();
    const cmd = JSON.parse(line);
    try {
      if (cmd.c === "boot") {
        await boot(cmd);
      } else if (cmd.c === "chars") {
        if (cmd.now) runPy(`_board.set_now(${cmd.now[0]},${cmd.now[1]})`);
        processChars(cmd.d);
      } else if (cmd.c === "tick") {
        runPy(`_board.tick(${cmd.now[0]},${cmd.now[1]})`);
      } else if (cmd.c === "exit") {
        finish(true);
      }
    } catch (e) {
      flushOut();
      send({ fatal: String(e && e.stack ? e.stack.split("\n")[0] : e) });
      process.exit(3);
    }
    flushOut();
    sendInterruptChar();
    send({ idle: 1 });
  }
}

await main();
