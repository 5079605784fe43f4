// sched/queue_set.h: EEVDF fair sharing of one thread between task queues.
//
// Reach for `QueueSet` when tasks belong to tenants or classes that must get
// the CPU in proportion to configured shares.  Each queue has an id, a share
// (1..10000) and its own `TaskScheduler` (FIFO by default).  Between queues
// the set runs EEVDF (Stoica and Abdel-Wahab 1995; Linux 6.6's fair class):
//
//   * Each runnable queue i has a virtual runtime v_i that advances by
//     service / w_i, and a virtual deadline vd_i = v_i + slice_i / w_i
//     (its request, slice_i, in virtual time).
//   * The virtual time V is the load-weighted average of the runnable v_i
//     (kept exactly as sum(w_i * (v_i - v0)) / sum(w_i)); queue i's lag is
//     w_i * (V - v_i) ticks: what it is owed (> 0) or overdrew (< 0).
//   * When the current queue's request is used up (a slice exhaustion: v_i
//     reached vd_i, and vd_i moves on by one request), or a wake-up preempts
//     it, Pick takes, among the eligible queues (lag >= 0, i.e. v_i <= V),
//     the one with the earliest virtual deadline.  Until then the picked
//     queue keeps running: a request is served whole, as in the paper
//     (request = quantum = the queue's slice), which bounds every queue's lag
//     by about one slice plus one poll.
//   * A queue that goes idle keeps its lag, clamped to +-slice_i, and on
//     return is placed at v_i = V - lag * (W + w_i) / W (Linux's place_entity),
//     so it neither hoards credit while asleep nor loses what it was owed.
//
// Service is charged in TSC ticks of real poll time, passed in by the caller.
// A queue's request is its share of `sched_latency_ticks` among all configured
// queues, at least `min_slice_ticks`.  Virtual time is fixed point: a queue's
// inverse weight is precomputed (2^32 / w), so the hot path multiplies and
// shifts and never divides (divisions happen only when the runnable set
// changes).
//
// Cost: a Pick inside the current slice and a Charge that does not end it are
// O(1) (inline, no tree).  At a slice boundary the choice is exact EEVDF:
// with up to 32 queues a branch-free scan of the runnable ones; with more, in
// O(log n): runnable queues sit in one of two tournament trees over queue
// slots, "eligible" keyed by deadline and "not yet eligible" keyed by v_i;
// queues whose v_i V has passed move over, and the eligible tree's minimum is
// the answer (rechecked, since V can step back when a queue joins or leaves).
// With one runnable queue nothing is consulted.
//
// Measured (medians, `./bazelw run -c opt //sched:sched_benchmark`, 2-core
// AMD EPYC VM, default config, polls of 1..20 us): Pick + Charge + Push
// ~7 ns with 1 queue, ~9 ns with 16, ~15 ns with 256.
//
// Idle transitions and the pick / charge / push cycle: a queue whose last task
// was just picked stays runnable through Charge; it goes idle only at the next
// Pick, if nobody pushed to it in between.  So `Pick; Charge; Push(same queue)`
// is seamless and never looks like a sleep.

#ifndef SPINDLE_SCHED_QUEUE_SET_H_
#define SPINDLE_SCHED_QUEUE_SET_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sched/scheduler.h"
#include "sched/task_node.h"

namespace spindle::sched {

using QueueId = uint32_t;

// Knobs of a QueueSet.  Ticks are TscClock ticks.
struct QueueSetConfig {
  // Period over which every runnable queue should run once; a queue's request
  // is sched_latency * share / (sum of shares), at least min_slice.
  uint64_t sched_latency_ticks = 0;
  // Smallest request of any queue.
  uint64_t min_slice_ticks = 0;

  // The largest sched_latency_ticks accepted (2^32 ticks, ~1.4 s at 3 GHz),
  // so virtual time arithmetic cannot overflow.
  static constexpr uint64_t kMaxLatencyTicks = uint64_t{1} << 32;

  // sched_latency 2 ms, min_slice 100 us, in ticks of the calibrated TSC.
  static QueueSetConfig Default();
  // InvalidArgument (naming the value and the valid range) for a zero
  // value, min_slice > sched_latency, or sched_latency > kMaxLatencyTicks.
  absl::Status Validate() const;
};

// One queue's counters (QueueSet::Stats / Snapshot).
struct QueueStats {
  QueueId id = 0;
  uint32_t share = 0;
  uint64_t service_ticks = 0;  // Sum of service charged.
  uint64_t polls = 0;          // Charges.
  uint64_t picks = 0;          // Tasks picked from this queue.
  int64_t lag_ticks = 0;       // Current lag (kept lag when idle); > 0 owed.
  uint64_t slice_exhaustions = 0;  // Requests used up (deadline moved on).
  uint64_t overruns = 0;       // Single polls longer than the queue's slice.
  uint64_t preemptions = 0;    // Times a wake-up set ShouldPreempt while this
                               // queue was the current one.
  size_t queued = 0;           // Tasks in the queue's scheduler.
  uint64_t slice_ticks = 0;    // The queue's request.
  bool runnable = false;
};

// QueueSet: up to 256 task queues shared by EEVDF.
//
// Requires: setup calls (AddQueue, SetShare) are not interleaved with a
// pick/charge cycle in flight.  Push takes a task that is not queued; Charge
// takes the task the last Pick returned (or one picked earlier from a queue
// that is still configured).  Tasks stay valid while queued.
// Guarantees: Push, Pick, Charge, Remove, ShouldPreempt are noexcept,
// allocation-free (except what a queue's own scheduler documents) and never
// read a clock.  While every queue stays runnable, each queue's service
// converges to its share: |lag| stays within about one request plus one poll.
// Thread safety: none; one thread drives a QueueSet (the executor's).
//
// Example:
//   QueueSet qs;
//   uint16_t web = *qs.AddQueue(/*id=*/1, /*share=*/300);
//   uint16_t batch = *qs.AddQueue(/*id=*/2, /*share=*/100);
//   qs.Push(web, &task.node);
//   while (TaskNode* t = qs.Pick()) {
//     uint64_t t0 = TscClock::Now();
//     bool runnable = Poll(t);
//     qs.Charge(t, TscClock::Now() - t0);
//     if (runnable) qs.Push(t->queue_index, t);
//   }
class QueueSet {
 public:
  static constexpr size_t kMaxQueues = 256;
  static constexpr uint32_t kMinShare = 1;
  static constexpr uint32_t kMaxShare = 10000;
  // Service of one charge counted in virtual time is capped at this (stats
  // keep the full value), so one runaway poll cannot overflow virtual time.
  static constexpr uint64_t kMaxChargeTicks = (uint64_t{1} << 32) - 1;
  static constexpr uint16_t kNoQueue = 0xffff;

  // An invalid config is replaced by Default() (call Validate() first to get
  // the error); use Create() to have it reported.
  explicit QueueSet(QueueSetConfig config = QueueSetConfig::Default());
  static absl::StatusOr<std::unique_ptr<QueueSet>> Create(
      QueueSetConfig config);
  QueueSet(const QueueSet&) = delete;
  QueueSet& operator=(const QueueSet&) = delete;
  ~QueueSet();

  // Setup: adds a queue and returns its index (0..255, in order of addition).
  // InvalidArgument for share outside 1..10000, a duplicate id, a 257th
  // queue, or a scheduler that already holds tasks.  A null scheduler means
  // FifoScheduler.
  absl::StatusOr<uint16_t> AddQueue(
      QueueId id, uint32_t share,
      std::unique_ptr<TaskScheduler> scheduler = nullptr);
  std::optional<uint16_t> IndexOf(QueueId id) const;
  // Setup: changes a queue's share, keeping its lag in ticks.
  // InvalidArgument for a bad index or share.
  absl::Status SetShare(uint16_t index, uint32_t share);
  size_t num_queues() const noexcept { return num_queues_; }
  const QueueSetConfig& config() const noexcept { return config_; }
  TaskScheduler& scheduler(uint16_t index) const { return *q_[index].sched; }

  // Hot path.
  // Queues `task` on queue `queue_index` (sets task->queue_index).  If the
  // queue was idle it becomes runnable, placed by its kept lag; if EEVDF would
  // then pick it before the current queue's request ends, ShouldPreempt()
  // becomes true.
  void Push(uint16_t queue_index, TaskNode* task) noexcept;
  // Push's common case: a task of normal priority to a FIFO queue that is
  // runnable already.  Otherwise
  // does nothing and returns false (then call Push).  Inline and without
  // calls, so that a caller's fast path needs no callee-saved registers.
  bool TryPushToRunnableFifo(uint16_t queue_index, TaskNode* task) noexcept;
  // The current queue while its request lasts and no preemption is pending;
  // otherwise EEVDF's choice (which clears ShouldPreempt and becomes the
  // current queue).  Then that queue's scheduler's Pop.  nullptr if all
  // queues are empty.
  TaskNode* Pick() noexcept;
  // Charges the poll that just ran to task->queue_index's queue: virtual
  // time, deadline, lag, stats, task->attained_service, then the scheduler's
  // Observe.  The caller pushes the task again afterwards if it is runnable.
  void Charge(TaskNode* task, uint64_t service_ticks) noexcept;

 private:
  struct Queue;

 public:
  // A cursor on the current queue for a loop that runs a whole slice (the
  // queue's scheduler must be the FIFO); valid until the next Pick, Charge
  // or ChargeSlice.
  //   Next: the queue's next task while its request lasts and no preemption
  //     is pending, else nullptr (the caller then charges what ran and calls
  //     Pick).
  //   Requeue: a task the slice ran, at the end of the queue, as Push would
  //     (a yield at the slice's end).
  //   YieldNext: Requeue, then Next, in one step for a task that yielded
  //     inside the slice.  While the slice goes on the queue is runnable (an
  //     invariant) and its size does not change, so this is a list push and
  //     pop and nothing else.
  //   Close: at the slice's end, with the number of tasks Next and
  //     YieldNext gave (the queue's picks, counted once per slice).
  class SliceCursor {
   public:
    TaskNode* Next() noexcept {
      if (!set_->SliceGoes()) return nullptr;
      TaskNode* t = fifo_->FifoScheduler::Pop();
      if (t == nullptr) return nullptr;
      ++set_->taken_;
      return t;
    }
    void Requeue(TaskNode* task) noexcept {
      fifo_->FifoScheduler::Push(task);  // Sets `queued`.
      ++set_->pushed_;
      if (!q_->runnable()) [[unlikely]] set_->PushJoin(index_);
    }
    TaskNode* YieldNext(TaskNode* task) noexcept {
      if (!set_->SliceGoes()) [[unlikely]] {
        Requeue(task);
        return nullptr;
      }
      fifo_->FifoScheduler::Push(task);
      return fifo_->FifoScheduler::Pop();  // Never null: `task` is queued.
    }
    // A task of normal priority that the caller held for this queue
    // outside it (the executor's hand-off slot) since the queue was empty:
    // it goes back where the queue would have had it, ahead of the normal
    // tasks queued since.
    void RequeueHandOff(TaskNode* task) noexcept {
      fifo_->PushFrontNormal(task);
      ++set_->pushed_;
      if (!q_->runnable()) [[unlikely]] set_->PushJoin(index_);
    }
    // Whether such a task may run next instead of Next()'s: the slice goes
    // on and no task of high priority waits.
    bool TakesHandOff() const noexcept {
      return set_->SliceGoes() && !fifo_->HasHigh();
    }
    // The queue's scheduler (for a caller that asks IsEmpty between
    // polls).
    const FifoScheduler* fifo() const noexcept { return fifo_; }
    void Close(uint32_t given) noexcept { q_->picks += given; }

   private:
    friend class QueueSet;
    QueueSet* set_;
    Queue* q_;
    FifoScheduler* fifo_;
    uint16_t index_;
  };
  SliceCursor CurrentSlice() noexcept;
  // Charges `polls` polls of queue `queue_index` that took `service_ticks`
  // together: what the run loop does at the end of a slice (it reads the
  // clock there, not per poll).  Tasks' attained_service and the
  // scheduler's Observe are left alone: a queue whose scheduler needs
  // per-poll service is charged per poll, with Charge.  An overrun is
  // counted only for a single poll (a slice of several says nothing about
  // each one).
  void ChargeSlice(uint16_t queue_index, uint64_t service_ticks,
                   uint32_t polls) noexcept;
  // Whether the queue's scheduler is the plain FIFO (nothing to observe).
  bool IsFifo(uint16_t queue_index) const noexcept {
    return q_[queue_index].fifo != nullptr;
  }
  // Unlinks a queued task (cancellation).  False if it is not queued.  A
  // queue left empty goes idle (the current queue: at the next Pick).
  bool Remove(TaskNode* task) noexcept;
  // True when a queue that became runnable would be picked before the
  // current queue's slice ends.  The executor checks it after each poll; the
  // next Pick clears it (and re-chooses the queue).
  bool ShouldPreempt() const noexcept { return slice_.preempt; }
  void ClearPreempt() noexcept { slice_.preempt = false; }
  size_t Size() const noexcept { return pushed_ - taken_; }
  bool Empty() const noexcept { return pushed_ == taken_; }
  // The queue of the last Pick (kNoQueue before the first or after an empty
  // Pick).
  uint16_t current() const noexcept { return current_; }
  size_t num_runnable() const noexcept { return nr_running_; }

  // Not hot.  An index >= num_queues() gives zeroed stats and lag 0.
  QueueStats Stats(uint16_t queue_index) const;
  std::vector<QueueStats> Snapshot() const;
  // Lag of a queue in ticks (> 0: owed service).  Kept lag when idle.
  int64_t LagTicks(uint16_t queue_index) const noexcept;
  // Checks every internal invariant (trees, sums, runnable set, counts); for
  // tests and debugging.  O(queues + queued tasks).
  absl::Status CheckInvariants() const;

 private:
  static constexpr int kVShift = 16;  // Virtual units per tick per weight.
  static constexpr int64_t kInf = INT64_MAX;
  static constexpr int64_t kRenormKey = int64_t{1} << 36;

  enum Where : uint8_t { kIdle = 0, kEligible = 1, kWaiting = 2 };

  // Per-queue state, indexed by queue index; hot fields first.
  struct Queue {
    int64_t key = 0;          // v_i - v0 while runnable.
    int64_t deadline = 0;     // vd_i - v0 while runnable.
    uint64_t inv_weight = 0;  // round(2^32 / w): dv = (ticks * inv) >> 16.
    TaskScheduler* sched = nullptr;
    FifoScheduler* fifo = nullptr;  // == sched when it is exactly a FIFO.
    uint64_t slice_ticks = 0;
    uint32_t weight = 0;
    Where where = kIdle;      // Which tree holds it (kIdle: not runnable).
    // Stats.
    uint64_t service = 0;
    uint64_t polls = 0;
    uint64_t picks = 0;
    uint64_t exhaustions = 0;
    uint64_t overruns = 0;
    uint64_t preemptions = 0;
    int64_t vslice = 0;       // slice in virtual units.
    int64_t vlag = 0;         // Kept V - v_i while idle (virtual units).
    QueueId id = 0;
    bool runnable() const noexcept { return where != kIdle; }
  };

  // A tournament tree over queue slots: the least value and its slot.  A
  // node is one int64, value << 8 | slot, so a level is a single min (ties go
  // to the lower slot); values stay within +-2^50 (see queue_set.cc).
  class MinTree {
   public:
    MinTree();
    void Reset(uint32_t cap) noexcept;  // All slots +inf.
    void Set(uint32_t slot, int64_t value) noexcept {
      int64_t* t = nodes_.get();
      uint32_t n = cap_ + slot;
      t[n] = value == kInf ? kInf
                           : static_cast<int64_t>(
                                 (static_cast<uint64_t>(value) << kSlotBits) |
                                 slot);
      for (n >>= 1; n != 0; n >>= 1) {
        const int64_t best = std::min(t[2 * n], t[2 * n + 1]);
        if (t[n] == best) break;  // Unchanged here means unchanged above.
        t[n] = best;
      }
    }
    void Clear(uint32_t slot) noexcept { Set(slot, kInf); }
    // The least value (+inf when empty) and its slot.
    int64_t min() const noexcept {
      return nodes_[1] == kInf ? kInf : nodes_[1] >> kSlotBits;
    }
    uint32_t argmin() const noexcept {
      return static_cast<uint32_t>(nodes_[1] & (kMaxQueues - 1));
    }
    int64_t at(uint32_t slot) const noexcept {
      const int64_t v = nodes_[cap_ + slot];
      return v == kInf ? kInf : v >> kSlotBits;
    }
    absl::Status Check() const;

   private:
    static constexpr int kSlotBits = 8;
    std::unique_ptr<int64_t[]> nodes_;  // [1, 2 * cap_); leaves at cap_ + i.
    uint32_t cap_ = 1;
  };

  // Pops and clears `queued` (FifoScheduler does; a user's might not).
  TaskNode* PopFrom(Queue& q) noexcept {
    if (q.fifo != nullptr) return q.fifo->FifoScheduler::Pop();
    TaskNode* t = q.sched->Pop();
    if (t != nullptr) t->queued = false;
    return t;
  }
  bool QueueEmpty(const Queue& q) const noexcept {
    return q.fifo != nullptr ? q.fifo->IsEmpty() : q.sched->Empty();
  }
  TaskNode* PickSlow() noexcept;
  void ChargeSlow(uint16_t index) noexcept;
  void ChargeIdle(Queue& q, int64_t dv) noexcept;
  void PushJoin(uint16_t index) noexcept;
  int64_t VirtualTime() const noexcept;
  uint16_t ChooseQueue() noexcept;
  uint16_t ScanChoose(int64_t v) const noexcept;
  // Copies a queue's key and deadline into the scan arrays (kScanIdle when
  // idle, which no V reaches).
  void Sync(uint16_t index) noexcept {
    const Queue& q = q_[index];
    scan_key_[index] = q.runnable() ? q.key : kScanIdle;
    scan_dl_[index] = q.deadline;
  }
  void Place(uint16_t index, int64_t v) noexcept;
  void Join(uint16_t index) noexcept;
  void Leave(uint16_t index) noexcept;
  void RebuildTrees() noexcept;
  void Renormalize() noexcept;
  void RecomputeSlices() noexcept;
  void SetInvLoad() noexcept;
  uint16_t FindSolo() const noexcept;

  QueueSetConfig config_;
  std::unique_ptr<Queue[]> q_;  // kMaxQueues entries.
  std::vector<std::unique_ptr<TaskScheduler>> owned_;
  MinTree eligible_;  // Eligible (as of the last choice): keyed by deadline.
  MinTree waiting_;   // Not yet eligible: keyed by v_i (eligible time).
  uint32_t cap_ = 1;
  // Up to kScanMaxQueues queues the choice scans the runnable queues (a few
  // dozen branch-free compares beat keeping two trees); beyond, the trees.
  static constexpr size_t kScanMaxQueues = 32;
  static constexpr int64_t kScanIdle = int64_t{1} << 54;
  bool use_trees_ = false;
  // Keys and deadlines of every queue, contiguous for the scan.
  std::unique_ptr<int64_t[]> scan_key_;
  std::unique_ptr<int64_t[]> scan_dl_;
  size_t num_queues_ = 0;
  // Tasks queued = pushed_ - taken_ (two counters: see sched_internal::Count).
  size_t pushed_ = 0;
  size_t taken_ = 0;
  uint32_t nr_running_ = 0;
  uint16_t solo_ = kNoQueue;  // The runnable queue when nr_running_ == 1.
  uint16_t current_ = kNoQueue;
  // `left`: current_ is runnable and within its request; `preempt`: a
  // queue that became runnable should be picked first.  One 16-bit word, so
  // that SliceGoes tests both with one compare.
  struct SliceFlags {
    bool preempt = false;
    bool left = false;
  };
  static_assert(sizeof(SliceFlags) == sizeof(uint16_t));
  SliceFlags slice_;
  // slice_.left && !slice_.preempt.
  bool SliceGoes() const noexcept {
    return std::bit_cast<uint16_t>(slice_) ==
           std::bit_cast<uint16_t>(SliceFlags{false, true});
  }
  int64_t avg_ = 0;          // sum over runnable of w_i * key_i.
  int64_t load_ = 0;         // sum over runnable of w_i.
  uint64_t inv_load_ = 0;    // floor(2^62 / load_).
  int64_t idle_v_ = 0;       // V to place against when nothing is runnable.
  uint64_t runnable_bits_[kMaxQueues / 64] = {};
  uint64_t total_weight_ = 0;  // Over all configured queues.
};

// Hot path, inline so the executor's loop pays no calls inside a slice.

inline void QueueSet::Push(uint16_t queue_index, TaskNode* task) noexcept {
  Queue& q = q_[queue_index];
  task->queue_index = queue_index;
  if (q.fifo != nullptr) {
    q.fifo->FifoScheduler::Push(task);  // Sets `queued`.
  } else {
    q.sched->Push(task);
    task->queued = true;  // Whatever a user's scheduler does.
  }
  ++pushed_;
  if (!q.runnable()) [[unlikely]] PushJoin(queue_index);
}

inline bool QueueSet::TryPushToRunnableFifo(uint16_t queue_index,
                                            TaskNode* task) noexcept {
  Queue& q = q_[queue_index];
  if (q.fifo == nullptr || !q.runnable()) return false;
  if (!q.fifo->TryPushNormal(task)) return false;  // Sets `queued`.
  task->queue_index = queue_index;
  ++pushed_;
  return true;
}

inline TaskNode* QueueSet::Pick() noexcept {
  if (SliceGoes()) [[likely]] {
    Queue& q = q_[current_];
    if (TaskNode* t = PopFrom(q)) [[likely]] {
      ++taken_;
      ++q.picks;
      return t;
    }
  }
  return PickSlow();
}

inline QueueSet::SliceCursor QueueSet::CurrentSlice() noexcept {
  SliceCursor c;
  c.set_ = this;
  c.q_ = &q_[current_];
  c.fifo_ = c.q_->fifo;
  c.index_ = current_;
  return c;
}

inline void QueueSet::ChargeSlice(uint16_t i, uint64_t service_ticks,
                                  uint32_t polls) noexcept {
  Queue& q = q_[i];
  q.service += service_ticks;
  q.polls += polls;
  const uint64_t s =
      service_ticks < kMaxChargeTicks ? service_ticks : kMaxChargeTicks;
  q.overruns += (polls == 1 && s > q.slice_ticks) ? 1 : 0;
  const auto dv = static_cast<int64_t>((s * q.inv_weight) >> kVShift);
  if (q.where == kEligible) [[likely]] {
    q.key += dv;
    scan_key_[i] = q.key;
    avg_ += static_cast<int64_t>(q.weight) * dv;
    if (q.key >= q.deadline) [[unlikely]] ChargeSlow(i);
  } else {
    ChargeIdle(q, dv);
  }
}

inline void QueueSet::Charge(TaskNode* task,
                             uint64_t service_ticks) noexcept {
  task->attained_service += service_ticks;
  const uint16_t i = task->queue_index;
  ChargeSlice(i, service_ticks, 1);
  if (q_[i].fifo == nullptr) q_[i].sched->Observe(task, service_ticks);
}

}  // namespace spindle::sched

#endif  // SPINDLE_SCHED_QUEUE_SET_H_
