# micropython, plus what the boards have and the WebAssembly build leaves out.
import micropython as _m

const = _m.const
schedule = _m.schedule
heap_lock = _m.heap_lock
heap_unlock = _m.heap_unlock
kbd_intr = _m.kbd_intr
opt_level = _m.opt_level
qstr_info = _m.qstr_info
stack_use = _m.stack_use


def alloc_emergency_exception_buf(size):
    pass


def mem_info(verbose=None):
    import gc

    print("stack: 0 out of 15360")
    print("GC: total: %d, used: %d, free: %d" % (
        gc.mem_alloc() + gc.mem_free(), gc.mem_alloc(), gc.mem_free()))
