// The firmware's own cost for a day of adverts, with no emulator around it: the same
// MicroPython VM (the same WebAssembly build the emulated boards run), the repository's
// sensor/presence.py, and the adverts a plaza day dealt to a board, replayed from a file.
//
//   node benchmarks/firmware_floor.mjs FIRMWARE_DIR ADVERTS_FILE
//
// Prints JSON: adverts, CPU seconds of the loop that calls on_advert, of the same loop
// without the call, and their difference (the floor the emulated day is compared with).
// File: per advert addr_type (1 byte), rssi (1, signed), data length (1), address (6), data.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const { loadMicroPython } = await import(
  path.join(here, "..", "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs")
);
const [firmwareDir, advFile] = process.argv.slice(2);
const mp = await loadMicroPython({ heapsize: 1 << 20, stdout: () => {}, stderr: (l) => process.stderr.write(l + "\n") });
const FS = mp._module.FS;
FS.mkdir("/fw");
FS.mkdir("/fw/sensor");
for (const f of ["__init__.py", "rng.py", "presence.py"]) {
  FS.writeFile(`/fw/sensor/${f}`, fs.readFileSync(path.join(firmwareDir, "sensor", f)));
}
FS.writeFile("/adverts.bin", fs.readFileSync(advFile));
mp.runPython(`
import sys
sys.path.insert(0, "/fw")
from sensor.presence import Presence

class _Rng:
    def bytes(self, n):
        return bytes(range(n))

f = open("/adverts.bin", "rb")
data = f.read()
f.close()
mv = memoryview(data)
p = Presence(_Rng(), 8192, -89)

def replay(call):
    i = 0
    n = 0
    end = len(data)
    on = p.on_advert
    while i < end:
        k = data[i + 2]
        r = data[i + 1]
        if call:
            on(data[i], mv[i + 3:i + 9], r - 256 if r > 127 else r, mv[i + 9:i + 9 + k])
        i += 9 + k
        n += 1
    return n
`);
function cpu(code) {
  const t = process.cpuUsage();
  mp.runPython(code);
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 1e6;
}
const bare = cpu("n = replay(False)");
const full = cpu("n = replay(True)");
const n = mp.globals.get("n");
console.log(JSON.stringify({ adverts: n, loop_s: full, loop_without_call_s: bare, on_advert_s: Math.max(0, full - bare) }));
