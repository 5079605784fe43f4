/* executor/spindle.h: Spindle's C interface (C11; also valid C++).
 *
 * For C programs and for other languages' foreign-function interfaces.  A
 * C task is a plain function `int fn(spindle_task_t* self, void* arg)` run
 * on a fiber (a stack of its own), so it may wait in the spindle_* calls
 * below at any call depth; its return value is its result.
 *
 * Conventions:
 *   - Handles are opaque pointers.  Attribute structs start with `size`
 *     (set it to sizeof the struct, or call the *_attr_init function): a
 *     library built from a newer header accepts an older, smaller struct,
 *     and a larger struct from a newer header is accepted when the fields
 *     this library does not know are zero (-E2BIG otherwise).
 *   - Every call returns an int: 0 (or a count, or a SPINDLE_RUN_* status)
 *     on success, a negative errno value on failure.  No C++ exception
 *     crosses this interface.  spindle_last_error() describes the calling
 *     thread's last failure.
 *   - No atomics, no inline functions, no macros that touch internals.
 *
 * Threads: an executor runs on one thread (the one that calls
 * spindle_executor_run); spindle_spawn is for that thread (or a task on
 * it), spindle_spawner_spawn for any thread.  A runtime runs its tasks on
 * worker threads of its own; spindle_runtime_spawn works from any thread.
 * Task handles may be joined, aborted and released from any thread (one
 * call on a handle at a time).
 *
 * Linking: depend on the Bazel target //executor:c_api (static), or link
 * the shared library //executor:libspindle.so, which exports only the
 * spindle_* symbols (see docs/guides/c_api.md).
 */

#ifndef SPINDLE_EXECUTOR_SPINDLE_H_
#define SPINDLE_EXECUTOR_SPINDLE_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h> /* struct sockaddr, socklen_t */

#ifdef __cplusplus
extern "C" {
#endif

#define SPINDLE_C_API_VERSION 2

typedef struct spindle_executor spindle_executor_t;
typedef struct spindle_runtime spindle_runtime_t;
typedef struct spindle_spawner spindle_spawner_t;
/* A task: a handle returned by a spawn (join, abort, release it), and the
 * `self` a running task receives (valid only during that call). */
typedef struct spindle_task spindle_task_t;

typedef int (*spindle_task_fn)(spindle_task_t* self, void* arg);

/* "major.minor.patch" of the executor layer. */
const char* spindle_version(void);
/* The calling thread's last failure, or "" if none. */
const char* spindle_last_error(void);

/* ---- Executors ---------------------------------------------------------- */

#define SPINDLE_REACTOR_AUTO 0
#define SPINDLE_REACTOR_IO_URING 1
#define SPINDLE_REACTOR_EPOLL 2
#define SPINDLE_REACTOR_NONE 3

typedef struct spindle_executor_attr {
  size_t size;              /* sizeof(spindle_executor_attr_t) */
  uint32_t num_queues;      /* 0: one default queue (id 0) */
  const uint32_t* queue_ids;    /* num_queues distinct ids */
  const uint32_t* queue_shares; /* num_queues shares, 1..10000 */
  int reactor;              /* SPINDLE_REACTOR_* */
  int tiers;                /* 0: from the environment, 1: on, -1: off */
  int task_timing;          /* 1: record per-task timing */
} spindle_executor_attr_t;

void spindle_executor_attr_init(spindle_executor_attr_t* attr);

/* attr may be NULL (defaults).  -EINVAL names the bad value in
 * spindle_last_error(). */
int spindle_executor_create(const spindle_executor_attr_t* attr,
                            spindle_executor_t** out);
/* Cancels (unwinds) every unfinished task, then frees the executor.
 * -EBUSY from one of its own tasks; never while another thread runs it. */
int spindle_executor_destroy(spindle_executor_t* ex);

#define SPINDLE_RUN_DONE 0       /* every task has finished */
#define SPINDLE_RUN_POLL_LIMIT 1 /* max_polls polls ran */
#define SPINDLE_RUN_TIMEOUT 2    /* timeout_ns passed */
#define SPINDLE_RUN_IDLE 3       /* nothing runnable (SPINDLE_RUN_UNTIL_IDLE) */

#define SPINDLE_RUN_UNTIL_IDLE 1 /* flag */

/* Runs tasks on the calling thread until every task has finished, or
 * max_polls polls ran (0: no limit), or timeout_ns passed (negative: no
 * limit; 0: never block), or, with SPINDLE_RUN_UNTIL_IDLE, nothing is
 * runnable.  Returns a SPINDLE_RUN_* value, or -EBUSY when called from a
 * task. */
int spindle_executor_run(spindle_executor_t* ex, uint64_t max_polls,
                         int64_t timeout_ns, int flags);

typedef struct spindle_stats {
  size_t size;             /* sizeof(spindle_stats_t) */
  uint64_t polls;
  uint64_t spawns;
  uint64_t completions;    /* returned */
  uint64_t cancellations;
  uint64_t live_tasks;
} spindle_stats_t;

/* out->size must be set by the caller. */
int spindle_executor_stats(const spindle_executor_t* ex, spindle_stats_t* out);

/* ---- Runtimes (many worker threads, work stealing) ---------------------- */

typedef struct spindle_runtime_attr {
  size_t size;              /* sizeof(spindle_runtime_attr_t) */
  uint32_t workers;         /* 0: one per CPU; else 1..1024 */
  uint32_t num_queues;      /* 0: one default queue (id 0) */
  const uint32_t* queue_ids;    /* num_queues distinct ids */
  const uint32_t* queue_shares; /* num_queues shares, 1..10000 */
  int reactor;              /* SPINDLE_REACTOR_* (one per worker) */
  int tiers;                /* 0: from the environment, 1: on, -1: off */
  int task_timing;          /* 1: record per-task timing */
} spindle_runtime_attr_t;

void spindle_runtime_attr_init(spindle_runtime_attr_t* attr);

/* attr may be NULL (defaults).  The workers start at once. */
int spindle_runtime_create(const spindle_runtime_attr_t* attr,
                           spindle_runtime_t** out);
/* Stops the workers, cancels (unwinds) every unfinished task and frees the
 * runtime.  -EBUSY from one of its own tasks. */
int spindle_runtime_destroy(spindle_runtime_t* rt);
/* The number of worker threads. */
int spindle_runtime_workers(const spindle_runtime_t* rt);
/* Sums of the workers' counters (polls, spawns, ...), read from a thread
 * that is not one of the runtime's workers (-EBUSY from a worker).  Waits
 * 1 s at most: a worker held in one poll that long is left out. */
int spindle_runtime_stats(const spindle_runtime_t* rt, spindle_stats_t* out);

/* ---- Spawning ----------------------------------------------------------- */

#define SPINDLE_PRIORITY_HIGH 0
#define SPINDLE_PRIORITY_NORMAL 1
#define SPINDLE_PRIORITY_LOW 2

/* Where a runtime runs a task (executors take only the default). */
#define SPINDLE_PLACE_STEALABLE 0 /* any worker; idle ones steal it */
#define SPINDLE_PLACE_PINNED 1    /* worker placement_arg, always */
#define SPINDLE_PLACE_PREFERRED 2 /* worker placement_arg first; stealable */
#define SPINDLE_PLACE_ROUND_ROBIN 3
#define SPINDLE_PLACE_STICKY 4 /* the same key (placement_arg), the same
                                  worker */

typedef struct spindle_task_attr {
  size_t size;           /* sizeof(spindle_task_attr_t) */
  uint32_t queue;        /* a queue id given to the executor; 0: default */
  int cpu_priority;      /* SPINDLE_PRIORITY_* */
  int io_priority;       /* SPINDLE_PRIORITY_* */
  size_t stack_size;     /* 0: 64 KiB; else 8 KiB .. 1 GiB */
  const char* name;      /* NULL: unnamed; not copied: it must stay valid
                            until the task ends (a string literal) */
  /* Since SPINDLE_C_API_VERSION 2 (a version 1 struct, without them, is
   * still accepted): */
  int placement;         /* SPINDLE_PLACE_* */
  uint64_t placement_arg; /* a worker index, or a sticky key */
} spindle_task_attr_t;

void spindle_task_attr_init(spindle_task_attr_t* attr);

/* Spawns fn(self, arg) as a fiber task; on the executor's thread.  out may
 * be NULL (detached); otherwise release the handle when done with it. */
int spindle_spawn(spindle_executor_t* ex, spindle_task_fn fn, void* arg,
                  const spindle_task_attr_t* attr, spindle_task_t** out);

/* A spawner submits tasks to its executor from any thread; it may outlive
 * the executor (tasks spawned then are cancelled at once). */
int spindle_spawner_create(spindle_executor_t* ex, spindle_spawner_t** out);
int spindle_spawner_destroy(spindle_spawner_t* sp);
int spindle_spawner_spawn(spindle_spawner_t* sp, spindle_task_fn fn,
                          void* arg, const spindle_task_attr_t* attr,
                          spindle_task_t** out);

/* Spawns on a runtime, from any thread (a task of it, too). */
int spindle_runtime_spawn(spindle_runtime_t* rt, spindle_task_fn fn,
                          void* arg, const spindle_task_attr_t* attr,
                          spindle_task_t** out);

/* ---- Task handles (any thread) ------------------------------------------ */

/* Waits for the task to end, at most timeout_ns (negative: no limit; 0:
 * do not wait), and stores its return value in *result (may be NULL).
 * Called from a task, the calling task suspends (its thread runs others).
 * 0, -ETIMEDOUT, -ECANCELED (aborted or dropped at shutdown), -ENOMEM (no
 * stack for it), -EDEADLK (from a plain thread that runs the task's
 * executor, which could never finish it).  Joining again gives the same
 * answer. */
int spindle_task_join(spindle_task_t* task, int* result, int64_t timeout_ns);
/* Cancels the task: one that has not run never runs; a suspended one is
 * unwound at its suspension point. */
int spindle_task_abort(spindle_task_t* task);
/* Frees the handle; the task itself runs on. */
int spindle_task_release(spindle_task_t* task);

/* ---- Inside a task (self is the task's own argument) -------------------- */

/* Each returns -ECANCELED once the task has been aborted (or its executor
 * is being destroyed): the task should then return promptly; its result is
 * ignored and its handle reports the cancellation.  -EPERM outside the
 * task; -EINVAL for a self that is not the task's own argument. */

int spindle_yield(spindle_task_t* self);
/* Yields only when the task's budget or slice is used up. */
int spindle_yield_maybe(spindle_task_t* self);
int spindle_sleep(spindle_task_t* self, uint64_t ns);
/* offset < 0: the file's current position.  Bytes, or a negative errno. */
int64_t spindle_read(spindle_task_t* self, int fd, void* buf, size_t len,
                     int64_t offset);
int64_t spindle_write(spindle_task_t* self, int fd, const void* buf,
                      size_t len, int64_t offset);
int spindle_fsync(spindle_task_t* self, int fd);

/* Sockets (descriptors in blocking or non-blocking mode).  accept: the new
 * descriptor (addr and addrlen may be NULL); connect: 0; recv / send:
 * bytes; each a negative errno on failure. */
int spindle_accept(spindle_task_t* self, int fd, struct sockaddr* addr,
                   socklen_t* addrlen);
int spindle_connect(spindle_task_t* self, int fd, const struct sockaddr* addr,
                    socklen_t addrlen);
int64_t spindle_recv(spindle_task_t* self, int fd, void* buf, size_t len,
                     int flags);
int64_t spindle_send(spindle_task_t* self, int fd, const void* buf,
                     size_t len, int flags);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPINDLE_EXECUTOR_SPINDLE_H_ */
