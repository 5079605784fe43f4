"""Loads libspindle.so with ctypes and runs Python functions as Spindle
tasks: proof that a language can bind the C interface without a C++
compiler.  Usage: c_api_python_test.py path/to/libspindle.so

A Python function run as a task keeps its Python frames on the fiber's
stack while it waits, and Python's per-thread state is not switched with
the fiber: so at most one Python task per thread may be suspended at a
time (this test keeps to that; see docs/guides/c_api.md)."""

import ctypes
import errno
import sys

lib = ctypes.CDLL(sys.argv[1])
failures = []


def check(cond, what):
    if not cond:
        err = lib.spindle_last_error().decode()
        failures.append(f"{what} (last error: {err!r})")


c_int_p = ctypes.POINTER(ctypes.c_int)
TASK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class TaskAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("queue", ctypes.c_uint32),
                ("cpu_priority", ctypes.c_int), ("io_priority", ctypes.c_int),
                ("stack_size", ctypes.c_size_t), ("name", ctypes.c_char_p),
                ("placement", ctypes.c_int),
                ("placement_arg", ctypes.c_uint64)]


class ExecutorAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("num_queues", ctypes.c_uint32),
                ("queue_ids", ctypes.POINTER(ctypes.c_uint32)),
                ("queue_shares", ctypes.POINTER(ctypes.c_uint32)),
                ("reactor", ctypes.c_int), ("tiers", ctypes.c_int),
                ("task_timing", ctypes.c_int)]


class RuntimeAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("workers", ctypes.c_uint32),
                ("num_queues", ctypes.c_uint32),
                ("queue_ids", ctypes.POINTER(ctypes.c_uint32)),
                ("queue_shares", ctypes.POINTER(ctypes.c_uint32)),
                ("reactor", ctypes.c_int), ("tiers", ctypes.c_int),
                ("task_timing", ctypes.c_int)]


class Stats(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("polls", ctypes.c_uint64),
                ("spawns", ctypes.c_uint64),
                ("completions", ctypes.c_uint64),
                ("cancellations", ctypes.c_uint64),
                ("live_tasks", ctypes.c_uint64)]


vp = ctypes.c_void_p
pvp = ctypes.POINTER(ctypes.c_void_p)
lib.spindle_version.restype = ctypes.c_char_p
lib.spindle_last_error.restype = ctypes.c_char_p
lib.spindle_executor_create.argtypes = [ctypes.POINTER(ExecutorAttr), pvp]
lib.spindle_executor_destroy.argtypes = [vp]
lib.spindle_executor_run.argtypes = [vp, ctypes.c_uint64, ctypes.c_int64,
                                     ctypes.c_int]
lib.spindle_executor_stats.argtypes = [vp, ctypes.POINTER(Stats)]
lib.spindle_spawn.argtypes = [vp, TASK_FN, vp, ctypes.POINTER(TaskAttr), pvp]
lib.spindle_runtime_create.argtypes = [ctypes.POINTER(RuntimeAttr), pvp]
lib.spindle_runtime_destroy.argtypes = [vp]
lib.spindle_runtime_spawn.argtypes = [vp, TASK_FN, vp,
                                      ctypes.POINTER(TaskAttr), pvp]
lib.spindle_task_join.argtypes = [vp, c_int_p, ctypes.c_int64]
lib.spindle_task_release.argtypes = [vp]
lib.spindle_yield.argtypes = [vp]
lib.spindle_sleep.argtypes = [vp, ctypes.c_uint64]

version = lib.spindle_version().decode()
check(version.count(".") == 2, f"version {version!r} is major.minor.patch")

# A Python function needs more stack than a C one: 1 MiB.
attr = TaskAttr()
lib.spindle_task_attr_init(ctypes.byref(attr))
check(attr.size == ctypes.sizeof(TaskAttr), "TaskAttr matches the header")
attr.stack_size = 1 << 20
attr.name = b"python"

steps = []


@TASK_FN
def add_one(self, arg):
    steps.append("start")
    check(lib.spindle_yield(self) == 0, "yield")
    check(lib.spindle_sleep(self, 1_000_000) == 0, "sleep 1 ms")
    steps.append("end")
    return ctypes.cast(arg, c_int_p).contents.value + 1


# ---- an executor on this thread
ex = ctypes.c_void_p()
check(lib.spindle_executor_create(None, ctypes.byref(ex)) == 0, "create")
value = ctypes.c_int(41)
task = ctypes.c_void_p()
check(lib.spindle_spawn(ex, add_one, ctypes.cast(ctypes.byref(value), vp),
                        ctypes.byref(attr), ctypes.byref(task)) == 0, "spawn")
check(lib.spindle_executor_run(ex, 0, -1, 0) == 0, "run to done")
result = ctypes.c_int(0)
check(lib.spindle_task_join(task, ctypes.byref(result), -1) == 0, "join")
check(result.value == 42, f"result {result.value} == 42")
check(steps == ["start", "end"], f"steps {steps}")
stats = Stats()
stats.size = ctypes.sizeof(Stats)
check(lib.spindle_executor_stats(ex, ctypes.byref(stats)) == 0, "stats")
check(stats.spawns == 1 and stats.completions == 1,
      f"stats spawns {stats.spawns} completions {stats.completions}")
check(lib.spindle_task_release(task) == 0, "release")

# Error paths: a NULL handle, an attribute struct from a newer version with
# a field this library does not know.
check(lib.spindle_executor_run(None, 0, -1, 0) == -errno.EINVAL, "NULL ex")
check(b"NULL" in lib.spindle_last_error(), "the message names the NULL")


class NewerAttr(ctypes.Structure):
    _fields_ = [("base", ExecutorAttr), ("future", ctypes.c_uint64)]


newer = NewerAttr()
lib.spindle_executor_attr_init(ctypes.byref(newer.base))
newer.base.size = ctypes.sizeof(NewerAttr)
newer.future = 1
other = ctypes.c_void_p()
check(lib.spindle_executor_create(ctypes.cast(ctypes.byref(newer),
                                              ctypes.POINTER(ExecutorAttr)),
                                  ctypes.byref(other)) == -errno.E2BIG,
      "a newer struct with an unknown field set is refused")
check(lib.spindle_executor_destroy(ex) == 0, "destroy")

# ---- a runtime: the task runs on a worker thread; this thread joins
rattr = RuntimeAttr()
lib.spindle_runtime_attr_init(ctypes.byref(rattr))
rattr.workers = 2
rt = ctypes.c_void_p()
check(lib.spindle_runtime_create(ctypes.byref(rattr), ctypes.byref(rt)) == 0,
      "runtime create")
value.value = 99
steps.clear()
check(lib.spindle_runtime_spawn(rt, add_one,
                                ctypes.cast(ctypes.byref(value), vp),
                                ctypes.byref(attr), ctypes.byref(task)) == 0,
      "runtime spawn")
result.value = 0
check(lib.spindle_task_join(task, ctypes.byref(result), -1) == 0,
      "runtime join")
check(result.value == 100, f"result {result.value} == 100")
check(lib.spindle_task_release(task) == 0, "release")
check(lib.spindle_runtime_destroy(rt) == 0, "runtime destroy")

if failures:
    for f in failures:
        print("FAILED:", f)
    sys.exit(1)
print("c_api_python_test: all checks passed")
