// executor/internal/monitor.h: the process-wide poll monitor.
//
// Protocol.  Each executor owns a PollBeacon and publishes, around every
// poll, with plain stores only (no RMW, no fence on the hot path):
//   begin: seq = the next odd value, then task_id and name (release)
//   end:   seq = even (the odd value + 1)
// A run of polls (a slice) may skip the end between two polls: the next
// begin's new odd seq says the poll before it is over.  The monitor reads
// seq, then task_id and name (acquire), then seq again, and keeps what it
// read only if seq did not change: a task_id or name it read from a later
// begin was stored after that begin's seq, so the second read of seq sees
// the change.
// One monitor thread (Go's sysmon is the model) samples the beacons of the
// executors that are inside Run.  It reads seq: an odd value it has seen
// before means the same poll is still running, and has been for at least
// the time since the monitor first saw it.  Past the beacon's slow
// threshold (the tiers' violation threshold) the poll is reported once as
// slow; past the stuck threshold (default 100 ms) once as stuck: a warning
// on stderr naming the task's id and name and how long, a counter, and the
// executor's hook (the Runtime hands a stuck worker's queue to others).
// The task's name is copied and the copy kept only if seq did not change
// meanwhile (names outlive their tasks, SpawnOptions::name).
//
// Sleeping.  With no executor inside Run the monitor blocks on a condition
// variable and does not wake at all.  While executors run, the base period
// is a quarter of the smallest threshold (at least 250 us, at most 25 ms):
// the monitor samples that often while a poll it has seen before is still
// running (so a slow poll is timed to within a base period).  While every
// poll it sees is new (short polls) it doubles the period up to 10 ms, and
// while no poll is in progress (executors parked) up to 50 ms: a slow poll
// is then first seen up to one period late and reported from there (the
// report's running time is a lower bound, never an overstatement).  The
// first Run after a pause wakes the monitor only if it waits longer than
// 10 ms (or for good), and the period goes on from where it was, at most
// 10 ms: a program that runs executors many times in a row does not
// restart the sampling from the base period at every Run.
//
// Shutdown.  Unregister takes the monitor's mutex, which the monitor holds
// while it samples: after Unregister returns the beacon is never touched.
// The monitor itself lives until the process ends.

#ifndef SPINDLE_EXECUTOR_INTERNAL_MONITOR_H_
#define SPINDLE_EXECUTOR_INTERNAL_MONITOR_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace spindle {
struct MonitorReport;
}  // namespace spindle

namespace spindle::executor_internal {

struct PollBeacon {
  // Written by the executor thread (relaxed stores), read by the monitor.
  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> task_id{0};
  std::atomic<const char*> name{nullptr};

  // The last slow-poll report, for the executor to charge to the task
  // when the poll returns (a poll that ran inside a slice has no time of
  // its own): the poll's odd seq, and when the monitor first saw it
  // (MonotonicClock ns; the poll began at most one period earlier).
  // Written by the monitor (since, then seq with release), read by the
  // executor after the poll.
  std::atomic<uint64_t> slow_seq{0};
  std::atomic<uint64_t> slow_since_ns{0};
  // Set by the monitor after the two above; the executor's per-poll test
  // (one byte compare) clears it.
  std::atomic<bool> slow_flag{false};

  // Counters: written by the monitor (relaxed), read by Stats().
  std::atomic<uint64_t> slow_reports{0};
  std::atomic<uint64_t> stuck_reports{0};

  // Immutable while registered.
  uint64_t slow_ns = 0;   // 0: no slow-poll reports
  uint64_t stuck_ns = 0;  // 0: no stuck reports
  std::function<void(const MonitorReport&)> hook;  // may be empty

  // Monitor-private sampling state (under the monitor's mutex).
  uint64_t seen_seq = 0;
  uint64_t seen_ns = 0;
  bool slow_reported = false;
  bool stuck_reported = false;

  // Executor thread, around each poll.
  void Begin(uint64_t id, const char* task_name) noexcept {
    seq_local_ += 2;
    // release (plain movs on x86): a monitor that reads the id or the name
    // of this poll then reads this seq or a later one (see the protocol).
    seq.store(seq_local_, std::memory_order_release);
    task_id.store(id, std::memory_order_release);
    name.store(task_name, std::memory_order_release);
  }
  // After a poll, or after the last poll of a run of them.
  void End() noexcept {
    seq.store(seq_local_ + 1, std::memory_order_release);
  }
  // After a poll (End or not): whether the monitor reported the poll that
  // just returned as slow.
  bool EndedPollWasSlow() noexcept {
    // acquire: pairs with the monitor's release store of the flag, after
    // slow_seq and slow_since_ns (a plain load on x86).
    if (!slow_flag.load(std::memory_order_acquire)) [[likely]] return false;
    slow_flag.store(false, std::memory_order_relaxed);
    // A report that came after its poll returned names an older seq.
    return slow_seq.load(std::memory_order_relaxed) == seq_local_;
  }
  // After EndedPollWasSlow returned true.
  uint64_t SlowSinceNs() const noexcept {
    return slow_since_ns.load(std::memory_order_relaxed);
  }

 private:
  // The odd seq of the last Begin (the first Begin makes it 1); executor
  // thread only.
  uint64_t seq_local_ = UINT64_MAX;
};

class Monitor {
 public:
  // The process's monitor; its thread starts with the first Register.
  static Monitor& Get();

  // Any thread, not hot: starts or stops watching `beacon`.
  void Register(PollBeacon* beacon);
  void Unregister(PollBeacon* beacon);
  // An executor enters or leaves Run (the monitor sleeps for good while no
  // executor is inside Run).
  void RunStarted();
  void RunEnded();

  // Times the monitor thread woke up (tests: it must not wake while idle).
  uint64_t wakeups() const noexcept {
    return wakeups_.load(std::memory_order_relaxed);
  }

 private:
  Monitor() = default;
  void Loop();
  enum class Sample {
    kIdle,      // no poll in progress
    kProgress,  // polls in progress, each one the monitor had not seen
    kLongPoll,  // a poll seen before is still running
  };
  // Samples every beacon (reporting what is due).
  Sample SampleLocked(uint64_t now_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t BasePeriodLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PollBeacon*> beacons_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  // A Run began since the monitor last sampled (it caps the next period).
  bool run_started_ ABSL_GUARDED_BY(mu_) = false;
  // The wait the monitor is in (read by RunStarted, which cannot run while
  // the monitor samples): its period, UINT64_MAX while it waits for a Run;
  // 0 before its thread first waits.
  uint64_t waiting_ns_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> wakeups_{0};
};

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_MONITOR_H_
