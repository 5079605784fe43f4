// executor/internal/inbox.h: the executor's cross-thread inbox.
//
// Protocol.  Producers (Spawner::Spawn, wakes and aborts from other threads)
// push TaskHeaders onto two intrusive MPSC queues (Vyukov's algorithm); the
// executor thread is the only consumer.  The executor parks with
//   1. parked = true  (seq_cst)
//   2. if either queue is non-empty: parked = false, do not sleep
//   3. driver->Poll(timeout)
//   4. parked = false
// and a producer does
//   a. push           (seq_cst exchange)
//   b. if parked: driver->Wake()
// Either the executor sees the item in step 2, or the producer sees
// parked == true in step b (both are seq_cst), so no wake is lost.
//
// Shutdown.  Producers bracket a submission with `inflight` (seq_cst); the
// executor sets `closed` and waits until `inflight` is zero, after which no
// producer can touch the queues or the driver: a submission that sees
// `closed` does not enqueue and reports it, so its task is cancelled by the
// submitter.

#ifndef SPINDLE_EXECUTOR_INTERNAL_INBOX_H_
#define SPINDLE_EXECUTOR_INTERNAL_INBOX_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "executor/driver.h"
#include "executor/internal/handle_anchor.h"
#include "executor/task.h"

namespace spindle::executor_internal {

// Intrusive multi-producer single-consumer queue of InboxNodes (linked
// through steal::InjectorNode's one field: see InboxNode, executor/task.h).
class MpscQueue {
 public:
  MpscQueue() noexcept : head_(&stub_), tail_(&stub_) {}

  // Any thread.
  void Push(InboxNode* node) noexcept {
    node->injector_next.store(nullptr, std::memory_order_relaxed);
    // seq_cst: orders the push before the producer's load of `parked`.
    InboxNode* prev = head_.exchange(node, std::memory_order_seq_cst);
    // release: pairs with the consumer's acquire load of next.
    prev->injector_next.store(node, std::memory_order_release);
  }

  // Consumer only.  nullptr when empty or when a producer is between its
  // exchange and its link (then Empty() is false: try again).
  InboxNode* Pop() noexcept {
    InboxNode* tail = tail_;
    InboxNode* next = tail->injector_next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->injector_next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;
    Push(&stub_);
    next = tail->injector_next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  // Consumer only.
  bool Empty() const noexcept {
    return tail_ == &stub_ && head_.load(std::memory_order_seq_cst) == &stub_;
  }

 private:
  alignas(64) std::atomic<InboxNode*> head_;  // producers
  alignas(64) InboxNode* tail_;               // consumer
  InboxNode stub_;
};

struct Inbox {
  // What the executor's JoinHandles hold (armed by the builder, retired by
  // the executor's destructor): it keeps this inbox alive.
  HandleAnchor handle_anchor;
  MpscQueue wakes;        // spawned tasks and wakes
  MpscQueue waker_wakes;  // Waker wakes (each holds a task reference)
  MpscQueue aborts;       // abort requests (each holds a task reference)
  // RequestStop: set by any thread, consumed by the executor's DrainInbox.
  std::atomic<bool> stop{false};
  // Nudge: set by any thread to end the executor's park (a Runtime worker
  // told that there is work to take); consumed by DrainInbox.
  std::atomic<bool> nudge{false};
  // True while a thread is inside Run/BlockOn (a misuse diagnostic: a
  // foreign thread spawning through the executor instead of a Spawner;
  // and a local spawn outside a Run is not stamped, see PrepareSpawn).
  std::atomic<bool> running{false};
  // Ids of tasks spawned through a Spawner (even; local spawns are odd).
  std::atomic<uint64_t> next_remote_id{0};
  std::atomic<bool> parked{false};
  std::atomic<bool> closed{false};
  std::atomic<int64_t> inflight{0};
  // Join registrations of this executor's tasks not yet consumed (by the
  // completer, after its wake, or by the waiter's own deregistration):
  // join_waits_owner less join_waits_remote.  The owner's thread counts
  // registrations and what it consumes itself in the plain counter (no RMW
  // on a join within one worker); other threads count what they consume
  // in the atomic one.
  int64_t join_waits_owner = 0;
  std::atomic<int64_t> join_waits_remote{0};
  Driver* driver = nullptr;  // valid until closed and drained
  // The executor; tasks record it at spawn.  Only compared by other threads
  // (never dereferenced by them) once the executor may be gone.
  LocalExecutor* owner = nullptr;

  // Immutable after Build: queue ids to QueueSet indices.
  absl::flat_hash_map<uint32_t, uint16_t> queue_index;
  uint16_t default_queue = 0;

  // Any thread.  False when the executor has shut down (nothing enqueued).
  bool Submit(MpscQueue& q, InboxNode* node) noexcept {
    inflight.fetch_add(1, std::memory_order_seq_cst);
    if (closed.load(std::memory_order_seq_cst)) {
      inflight.fetch_sub(1, std::memory_order_seq_cst);
      return false;
    }
    q.Push(node);
    if (parked.load(std::memory_order_seq_cst)) driver->Wake();
    inflight.fetch_sub(1, std::memory_order_seq_cst);
    return true;
  }

  // Any thread: asks the executor to stop (see LocalExecutor::RequestStop).
  void RequestStop() noexcept {
    inflight.fetch_add(1, std::memory_order_seq_cst);
    if (!closed.load(std::memory_order_seq_cst)) {
      stop.store(true, std::memory_order_seq_cst);
      if (parked.load(std::memory_order_seq_cst)) driver->Wake();
    }
    inflight.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Any thread: ends the executor's current or next park.
  void Nudge() noexcept {
    inflight.fetch_add(1, std::memory_order_seq_cst);
    if (!closed.load(std::memory_order_seq_cst)) {
      nudge.store(true, std::memory_order_seq_cst);
      if (parked.load(std::memory_order_seq_cst)) driver->Wake();
    }
    inflight.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Executor thread, at shutdown: after this no producer touches the inbox.
  void Close() noexcept {
    closed.store(true, std::memory_order_seq_cst);
    while (inflight.load(std::memory_order_seq_cst) != 0) {
      std::this_thread::yield();
    }
  }

  bool Empty() const noexcept {
    return wakes.Empty() && waker_wakes.Empty() && aborts.Empty() &&
           !stop.load(std::memory_order_seq_cst) &&
           !nudge.load(std::memory_order_seq_cst);
  }
};

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_INBOX_H_
