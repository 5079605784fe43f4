// budget/tier.h: CPU-time tiers for tasks whose polls run too long.
//
// Reach for `TierManager` first.  The run loop calls `BeforePoll` before it
// resumes a task and `AfterPoll` with the poll's TSC duration after; AfterPoll
// returns the `Action` the scheduler must carry out.  A task's tier state
// lives in its `TaskContext` (inside the executor's task header), so the hot
// path touches only the task and the manager's read-only `TierPolicy`.
//
// The tiers, climbed and descended one level at a time:
//   kMonitor  normal.  Slow polls are counted.
//   kWarn     reported: warning counter, optional callback (task id and name),
//             one log line per task per tier.
//   kYield    mitigated: the task gets a smaller budget and deadline so it
//             yields sooner; AfterPoll says kYield after each of its slow polls.
//   kIsolate  the scheduler must keep the task in its isolation lane (a queue
//             with a small share, or an isolation worker) while
//             `ctx.tier() == Tier::kIsolate`.
//
// The rules (all times are per task, measured with the ticks passed in):
//   * A poll is a *violation* when it runs longer than the CPU threshold
//     (`cpu_threshold_ns` times the priority's threshold scale).
//   * Violation cooldown: violations count toward promotion only while they
//     come no more than `violation_cooldown_ns` apart; after a longer quiet
//     gap the count starts again (a "cooldown").
//   * Promotion: `promotion_violations[tier]` counted violations climb one
//     tier, but no sooner than `promotion_hysteresis_ns` after the task's
//     previous promotion (the count is kept and the promotion happens on the
//     first violation after the hysteresis).
//   * Demotion: `demotion_good_polls` consecutive good polls (each no longer
//     than `demotion_cpu_threshold_ns` times the priority's threshold scale)
//     descend one tier, once the task has been at its tier at least
//     `demotion_min_time_ns` and its last violation is at least
//     `demotion_hysteresis_ns` old.  A violation, or a poll between the good
//     and the violation thresholds, ends the streak.
//   * With `escalation_enabled == false`, tasks climb no higher than kWarn:
//     detection and attribution without mitigation.
//   * A poll that finishes the task (PollOutcome::kReady) is counted as a
//     slow poll when it is one, but changes no tier.
//
// Environment (TierConfig::FromEnv): SPINDLE_TIER_PRESET, SPINDLE_BUDGET,
// SPINDLE_CPU_THRESHOLD_NS, SPINDLE_TIER_ESCALATION.

#ifndef SPINDLE_BUDGET_TIER_H_
#define SPINDLE_BUDGET_TIER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "budget/task_budget.h"
#include "timing/clock.h"

namespace spindle::budget {

// The poll deadline as a fraction of the violation threshold (TierPolicy).
inline constexpr double kDeadlineFractionOfThreshold = 0.5;

enum class Tier : uint8_t { kMonitor = 0, kWarn = 1, kYield = 2, kIsolate = 3 };
inline constexpr int kNumTiers = 4;

// What the scheduler must do after a poll.
//   kNone     nothing.
//   kWarn     the poll was slow and the task is at the warn tier (already
//             reported to the warning sink); nothing to do but may be logged.
//   kYield    the task is at the yield tier and just ran long: requeue it at
//             the back (its next BeforePoll gives it the smaller budget).
//   kIsolate  the task is at the isolate tier: it must run in the isolation
//             lane.  Returned on promotion to kIsolate and on each slow poll
//             there.  A task leaves the lane when `ctx.tier()` drops below
//             kIsolate (demotion returns kNone).
enum class Action : uint8_t { kNone, kWarn, kYield, kIsolate };

enum class PollOutcome : uint8_t { kPending, kReady };  // suspended / finished

// The executor sets a task's TaskPriority from its one CPU priority
// (spindle::Priority: high, normal, low map to kHigh, kNormal, kLow);
// kCritical is for users of this layer on its own.
enum class TaskPriority : uint8_t { kCritical, kHigh, kNormal, kLow };
inline constexpr int kNumPriorities = 4;

std::string_view TierName(Tier tier) noexcept;
std::string_view ActionName(Action action) noexcept;
std::string_view TaskPriorityName(TaskPriority priority) noexcept;

// Per-task tier bookkeeping.  Owned by the thread polling the task; written
// only by TierManager.  Zero-initialised state is "just spawned, kMonitor".
// Allocated at the task's first slow poll (TaskContext::tier_bookkeeping).
struct TierState {
  uint32_t violations = 0;     // counted toward the next promotion
  uint32_t good_polls = 0;     // current streak of good polls
  uint64_t tier_entered_tick = 0;
  uint64_t last_promotion_tick = 0;
  uint64_t last_violation_tick = 0;
  uint32_t total_violations = 0;  // over the task's life (saturating)
  uint8_t logged_tiers = 0;       // bit t: a log line was written for tier t
  bool promoted_before = false;   // last_promotion_tick is meaningful
  bool violated_before = false;   // last_violation_tick is meaningful
};

// The task's budget and tier state, embedded in the executor's task header.
// 16-byte aligned (it holds a TaskBudget): plain `new` and coroutine frames
// on x86-64 / aarch64 already are.  Movable, not copyable (it owns its tier
// bookkeeping); the executor never moves a live header.
struct TaskContext {
  // What a poll touches first.
  TaskBudget budget;
  uint64_t task_id = 0;
  const char* name = nullptr;  // may be null; static / long-lived string
  uint64_t poll_start_tick = 0;  // set by BeforePoll
  // The tier bookkeeping, allocated by TierManager at the task's first slow
  // poll and freed with the context: most tasks never have a slow poll, and
  // 8 bytes here instead of the 40 of a TierState keep every task header
  // smaller (a burst of 100k spawns is bound by the memory it writes).
  // Null: no slow poll yet, every field zero.
  std::unique_ptr<TierState> tier_bookkeeping;
  // Last: the struct's 15 bytes of tail padding (its size is a multiple of
  // 16) follow it, where a header that embeds the context as a
  // [[no_unique_address]] member places its own small fields (the
  // executor's task header does).
  TaskPriority priority = TaskPriority::kNormal;

  // The bookkeeping, or an all-zero state when there is none yet.
  const TierState& tier_state() const noexcept {
    static constexpr TierState kNone{};
    return tier_bookkeeping != nullptr ? *tier_bookkeeping : kNone;
  }
  Tier tier() const noexcept { return static_cast<Tier>(budget.tier()); }
};

// TierConfig: the user-facing knobs, in nanoseconds and plain numbers.
//
// Every field is used by TierManager (see the rules in the file comment).
// Arrays indexed by tier are indexed by the tier being left; by priority, by
// TaskPriority.  Validate() states each valid range.
struct TierConfig {
  // Operations per poll at kMonitor / kWarn (before priority scaling).
  uint32_t poll_budget = 2000;
  // A poll longer than this is a violation (before priority scaling).
  uint64_t cpu_threshold_ns = 1'000'000;
  // Violations to climb from tier i to i + 1 (monitor->warn, warn->yield,
  // yield->isolate).
  std::array<uint32_t, 3> promotion_violations = {2, 4, 8};
  // Demotion: consecutive good polls, each no longer than this CPU time
  // (at most cpu_threshold_ns), after at least this long at the tier.
  uint32_t demotion_good_polls = 100;
  uint64_t demotion_cpu_threshold_ns = 500'000;
  uint64_t demotion_min_time_ns = 1'000'000'000;
  // Minimum time between two promotions of a task.
  uint64_t promotion_hysteresis_ns = 100'000'000;
  // Minimum time since the task's last violation before a demotion.
  uint64_t demotion_hysteresis_ns = 500'000'000;
  // Violations further apart than this do not accumulate toward promotion.
  uint64_t violation_cooldown_ns = 1'000'000'000;
  // Budget and deadline at kYield / kIsolate, as a fraction of the base.
  double yield_budget_fraction = 0.25;
  double isolate_budget_fraction = 0.125;
  // Priority scaling (indexed by TaskPriority): multipliers on the budget and
  // on the CPU thresholds (violation, good poll, deadline).
  std::array<double, 4> priority_budget_scale = {2.0, 1.5, 1.0, 0.5};
  std::array<double, 4> priority_threshold_scale = {2.0, 1.5, 1.0, 0.5};
  // Climb past kWarn (mitigation).  False: detect and report only.
  bool escalation_enabled = true;
  // Write one log line (stderr) per task per tier reached at kWarn or above.
  bool log_warnings = true;

  static TierConfig Aggressive();
  static TierConfig Balanced();  // == TierConfig{}
  static TierConfig Permissive();

  // InvalidArgument naming the field, the value and the valid range.
  absl::Status Validate() const;

  // Balanced(), or the preset named by SPINDLE_TIER_PRESET
  // (aggressive|balanced|permissive, any case), then overridden by
  // SPINDLE_BUDGET (poll_budget, integer in [1, 1000000]),
  // SPINDLE_CPU_THRESHOLD_NS (integer in [1000, 10000000000]; the demotion
  // CPU threshold keeps the preset's ratio to it) and SPINDLE_TIER_ESCALATION
  // (true|false|1|0, any case).  An unset or empty variable keeps the preset.
  // InvalidArgument names the variable, the value and the valid range.
  static absl::StatusOr<TierConfig> FromEnv();
};

// TierPolicy: a validated TierConfig converted to ticks and per-tier,
// per-priority tables: what the hot path reads (no multiplies, no division).
struct TierPolicy {
  std::array<std::array<uint32_t, 4>, 4> budget{};          // [tier][priority]
  // The poll deadline YieldMaybe() honours: half the violation threshold
  // (times the tier's fraction), so polite code is never judged slow.
  std::array<std::array<uint64_t, 4>, 4> deadline_ticks{};  // [tier][priority]
  std::array<uint64_t, 4> violation_ticks{};                // [priority]
  std::array<uint64_t, 4> good_poll_ticks{};                // [priority]
  std::array<uint32_t, 3> promotion_violations{};           // [tier]
  uint32_t demotion_good_polls = 0;
  uint64_t min_ticks_at_tier = 0;
  uint64_t promotion_hysteresis_ticks = 0;
  uint64_t demotion_hysteresis_ticks = 0;
  uint64_t cooldown_ticks = 0;
  Tier max_tier = Tier::kIsolate;
  bool log_warnings = true;
  // ns = (ticks * ns_per_tick_q32) >> 32.
  uint64_t ns_per_tick_q32 = uint64_t{1} << 32;
  TierConfig config;

  // Converts with the calibrated TSC (timing::TscClock).
  static absl::StatusOr<TierPolicy> FromConfig(const TierConfig& config);
  // Converts with an explicit tick rate, e.g. 1.0 to make ticks nanoseconds
  // in tests that drive a fake clock.  ticks_per_ns in [1e-6, 1e6].
  static absl::StatusOr<TierPolicy> FromConfig(const TierConfig& config,
                                               double ticks_per_ns);

  uint64_t TicksToNanos(uint64_t ticks) const noexcept {
    // __extension__: a consumer's -Wpedantic accepts the 128-bit type.
    __extension__ typedef unsigned __int128 Uint128;
    return static_cast<uint64_t>(
        (static_cast<Uint128>(ticks) * ns_per_tick_q32) >> 32);
  }
};

struct WarningEvent {
  uint64_t task_id;
  const char* name;  // may be null
  Tier tier;         // the tier the task is at after the poll
  uint64_t poll_ns;  // the slow poll's duration
};

// A snapshot of TierManager's counters.
struct TierMetrics {
  std::array<int64_t, 4> tasks_per_tier{};  // live tasks (OnSpawn/OnComplete)
  uint64_t promotions = 0;
  uint64_t demotions = 0;
  uint64_t violations = 0;  // slow kPending polls evaluated by the tier rules
  uint64_t slow_polls = 0;  // every poll over the threshold (incl. kReady)
  uint64_t cooldowns = 0;   // violation counts restarted after a quiet gap
  uint64_t warnings = 0;    // warning events (each one reaches the callback)
  uint64_t log_lines = 0;   // warning log lines written
  uint64_t yields = 0;      // OnYield calls
};

// TierManager: evaluates each poll and moves tasks between tiers.
//
// Requires: one executor thread at a time calls BeforePoll / AfterPoll /
// OnYield / OnSpawn / OnComplete for a given manager (one manager per
// executor thread); every task is OnSpawn'ed before its first poll and
// OnComplete'd once.  SetWarningCallback is called before polling starts.
// Guarantees: the hot path is noexcept, allocation-free and lock-free; a
// well-behaved task at kMonitor costs a table lookup in BeforePoll and one
// compare in AfterPoll.  Tiers change by one level at a time and stay within
// [kMonitor, policy().max_tier].
// Thread safety: Metrics() may be called from any thread: counters are
// relaxed atomics (they publish nothing; a snapshot is not atomic as a whole).
// The warning callback runs on the polling thread, inside AfterPoll; it must
// not throw (AfterPoll is noexcept: a throwing callback terminates).
//
// Example:
//   auto tm = TierManager::Create(TierConfig::Balanced()).value();
//   tm->OnSpawn(ctx);
//   tm->BeforePoll(ctx);
//   uint64_t t0 = ctx.poll_start_tick;  task.resume();
//   switch (tm->AfterPoll(ctx, outcome, TscClock::Now() - t0)) { ... }
class TierManager {
 public:
  static absl::StatusOr<std::unique_ptr<TierManager>> Create(
      const TierConfig& config);
  // From an already converted policy (e.g. FromConfig(config, 1.0) in tests).
  static std::unique_ptr<TierManager> Create(const TierPolicy& policy);

  TierManager(const TierManager&) = delete;
  TierManager& operator=(const TierManager&) = delete;

  // Setup only (before any poll).
  void SetWarningCallback(std::function<void(const WarningEvent&)> cb);

  // Refills the budget for the task's tier and priority, sets the deadline,
  // stamps poll_start_tick = now_ticks.
  void BeforePoll(TaskContext& ctx, uint64_t now_ticks) noexcept {
    const unsigned t = ctx.budget.tier() & 3u;
    const unsigned p = static_cast<unsigned>(ctx.priority) & 3u;
    ctx.budget.Reset(policy_.budget[t][p]);
    ctx.budget.set_deadline(now_ticks + policy_.deadline_ticks[t][p]);
    ctx.poll_start_tick = now_ticks;
  }
  void BeforePoll(TaskContext& ctx) noexcept {
    BeforePoll(ctx, timing::TscClock::Now());
  }

  // Evaluates the poll.  The time used for time-based rules is
  // ctx.poll_start_tick + elapsed_ticks (no clock read), so a test drives a
  // fake clock through the ticks it passes.
  Action AfterPoll(TaskContext& ctx, PollOutcome outcome,
                   uint64_t elapsed_ticks) noexcept {
    const unsigned p = static_cast<unsigned>(ctx.priority) & 3u;
    // At kMonitor a poll within the violation threshold changes nothing.
    if (elapsed_ticks <= policy_.violation_ticks[p] &&
        ctx.budget.tier() == 0) [[likely]] {
      return Action::kNone;
    }
    return AfterPollSlow(ctx, outcome, elapsed_ticks);
  }

  // The task yielded (budget or deadline spent, or yield_now).
  void OnYield(TaskContext& ctx) noexcept;
  // `n` yields at once (an executor counts them per slice): the same
  // metric as n OnYield calls.
  void CountYields(uint64_t n) noexcept {
    yields_.store(yields_.load(std::memory_order_relaxed) + n,
                  std::memory_order_relaxed);
  }
  // The task finished: leaves the per-tier gauge of its tier.  Inline, as
  // OnSpawn: once per task, on every spawn-heavy path.
  void OnComplete(TaskContext& ctx) noexcept {
    // Relaxed load + store, not an RMW: only the owning thread writes (see
    // the class comment); Metrics() on another thread reads relaxed.
    auto& gauge = tasks_per_tier_[ctx.budget.tier() & 3u];
    gauge.store(gauge.load(std::memory_order_relaxed) - 1,
                std::memory_order_relaxed);
  }
  // The task entered: tier state reset, kMonitor, joins the kMonitor gauge.
  void OnSpawn(TaskContext& ctx) noexcept {
    // Null for a new task: a test, no store (a reused context starts clean,
    // out of line).
    if (ctx.tier_bookkeeping != nullptr) [[unlikely]] DropBookkeeping(ctx);
    ctx.budget.set_tier(0);
    // Owner-thread write, as in OnComplete.
    tasks_per_tier_[0].store(
        tasks_per_tier_[0].load(std::memory_order_relaxed) + 1,
        std::memory_order_relaxed);
  }
  // A started task moved in from another manager (a Runtime worker handed
  // it over; that manager called OnComplete): it keeps its tier state and
  // joins the gauge of its tier here.
  void OnMoveIn(const TaskContext& ctx) noexcept;

  TierMetrics Metrics() const;
  const TierPolicy& policy() const noexcept { return policy_; }

 private:
  explicit TierManager(const TierPolicy& policy);

  Action AfterPollSlow(TaskContext& ctx, PollOutcome outcome,
                       uint64_t elapsed_ticks) noexcept;
  void SetTier(TaskContext& ctx, unsigned from, unsigned to,
               uint64_t now) noexcept;
  void Warn(TaskContext& ctx, uint64_t elapsed_ticks) noexcept;
  [[gnu::cold, gnu::noinline]] static void DropBookkeeping(
      TaskContext& ctx) noexcept;

  static void Bump(std::atomic<uint64_t>& c) noexcept {
    // Relaxed load + store: only the owning thread writes (no RMW needed);
    // pairs with the relaxed loads in Metrics().
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  const TierPolicy policy_;
  std::function<void(const WarningEvent&)> warning_cb_;

  std::array<std::atomic<int64_t>, 4> tasks_per_tier_{};
  std::atomic<uint64_t> promotions_{0};
  std::atomic<uint64_t> demotions_{0};
  std::atomic<uint64_t> violations_{0};
  std::atomic<uint64_t> slow_polls_{0};
  std::atomic<uint64_t> cooldowns_{0};
  std::atomic<uint64_t> warnings_{0};
  std::atomic<uint64_t> log_lines_{0};
  std::atomic<uint64_t> yields_{0};
};

}  // namespace spindle::budget

#endif  // SPINDLE_BUDGET_TIER_H_
