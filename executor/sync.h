// executor/sync.h: everything tasks use to coordinate with each other.
//
// Reach for:
//   Channel<T>            bounded MPMC queue (executor/channel.h)
//   Oneshot (MakeOneshot) one value, one sender, one receiver (oneshot.h)
//   Watch<T>              the latest value, watched by many (watch.h)
//   Mutex, Semaphore      async locks, FIFO (semaphore.h)
//   Notify, WaitGroup     events and counts (notify.h)
//   WhenAny, WhenAll, Timeout  select, join, and bound any awaitables
//                         (select.h)
//   CancellationToken     cancel a tree of work; WithCancellation bounds
//                         any awaitable by a token (cancellation.h)
//   SpawnBlocking, Resolve  blocking calls on a separate, bounded pool of
//                         threads; name resolution (blocking.h)
// Each waits by suspending the task, never its thread, works across the
// workers of a Runtime and on one LocalExecutor, has blocking forms for
// plain threads, and is safe to cancel in every state (see each header).

#ifndef SPINDLE_EXECUTOR_SYNC_H_
#define SPINDLE_EXECUTOR_SYNC_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include "executor/blocking.h"
#include "executor/cancellation.h"
#include "executor/channel.h"
#include "executor/notify.h"
#include "executor/oneshot.h"
#include "executor/select.h"
#include "executor/semaphore.h"
#include "executor/watch.h"

#endif  // SPINDLE_EXECUTOR_SYNC_H_
