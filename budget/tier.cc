// TierManager protocol.
//
// State: each task's tier lives in ctx.budget (tier byte, so observers can
// read it) and its bookkeeping in *ctx.tier_bookkeeping (allocated at the
// task's first slow poll).  Both are owned by the
// thread polling the task and written only from BeforePoll / AfterPoll /
// OnSpawn / OnComplete on that thread; moving a task between threads goes
// through the run queue's synchronisation.
//
// Transitions (per task, driven by AfterPoll with now = poll_start_tick +
// elapsed):
//   1. violation (elapsed > violation_ticks[prio]), outcome kPending:
//      restart the count if the previous violation is older than the
//      cooldown; count it; end the good streak; if the count reached
//      promotion_violations[tier], tier < max_tier and the promotion
//      hysteresis has passed: tier + 1, count and streak reset.
//   2. good poll (elapsed <= good_poll_ticks[prio]) at tier > kMonitor:
//      streak + 1; if streak >= demotion_good_polls, time at tier >=
//      min_ticks_at_tier and the last violation is >= demotion hysteresis
//      old: tier - 1, count and streak reset.
//   3. anything else at tier > kMonitor ends the streak.
//
// Manager-wide counters are relaxed atomics: written by the polling thread,
// read by Metrics() from any thread.  They order nothing.

#include "budget/tier.h"

#include <cmath>
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace spindle::budget {
namespace {

constexpr uint64_t kHourNs = 3600ull * 1'000'000'000ull;
constexpr uint32_t kMaxPollBudget = 1'000'000;
constexpr uint64_t kMinCpuThresholdNs = 1'000;
constexpr uint64_t kMaxCpuThresholdNs = 10'000'000'000ull;
constexpr double kMinScale = 0.01;
constexpr double kMaxScale = 100.0;

absl::Status RangeError(const std::string& field, const std::string& value,
                        const std::string& range) {
  return absl::InvalidArgumentError(absl::StrCat(
      "TierConfig.", field, " = ", value, " is out of range; valid range ",
      range));
}

absl::Status CheckU64(const std::string& field, uint64_t v, uint64_t lo,
                      uint64_t hi) {
  if (v < lo || v > hi) {
    return RangeError(field, absl::StrCat(v),
                      absl::StrCat("[", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckFraction(const std::string& field, double v) {
  if (!(v > 0.0 && v <= 1.0)) {
    return RangeError(field, absl::StrFormat("%g", v), "(0, 1]");
  }
  return absl::OkStatus();
}

absl::Status CheckScale(const std::string& field, double v) {
  if (!(v >= kMinScale && v <= kMaxScale)) {
    return RangeError(field, absl::StrFormat("%g", v),
                      absl::StrFormat("[%g, %g]", kMinScale, kMaxScale));
  }
  return absl::OkStatus();
}

// Strict unsigned decimal: digits only, no sign, no spaces, no overflow.
bool ParseU64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

absl::Status EnvError(const char* var, const std::string& value,
                      const std::string& what, const std::string& range) {
  return absl::InvalidArgumentError(absl::StrCat(
      var, "='", value, "' ", what, "; valid ", range));
}

// Returns true and the value when `var` is set and non-empty.
bool GetEnv(const char* var, std::string* out) {
  const char* v = std::getenv(var);
  if (v == nullptr || *v == '\0') return false;
  *out = v;
  return true;
}

absl::Status ParseEnvU64(const char* var, uint64_t lo, uint64_t hi,
                         bool* present, uint64_t* out) {
  std::string s;
  *present = GetEnv(var, &s);
  if (!*present) return absl::OkStatus();
  const std::string range = absl::StrCat("range [", lo, ", ", hi, "]");
  uint64_t v = 0;
  if (!ParseU64(s, &v)) {
    return EnvError(var, s, "is not a non-negative decimal integer", range);
  }
  if (v < lo || v > hi) return EnvError(var, s, "is out of range", range);
  *out = v;
  return absl::OkStatus();
}

uint64_t NsToTicks(double ns, double ticks_per_ns) {
  const double t = std::round(ns * ticks_per_ns);
  if (t < 1.0) return 1;
  if (t >= 1.8e19) return std::numeric_limits<uint64_t>::max() / 4;
  return static_cast<uint64_t>(t);
}

}  // namespace

std::string_view TierName(Tier tier) noexcept {
  switch (tier) {
    case Tier::kMonitor: return "monitor";
    case Tier::kWarn: return "warn";
    case Tier::kYield: return "yield";
    case Tier::kIsolate: return "isolate";
  }
  return "unknown";
}

std::string_view ActionName(Action action) noexcept {
  switch (action) {
    case Action::kNone: return "none";
    case Action::kWarn: return "warn";
    case Action::kYield: return "yield";
    case Action::kIsolate: return "isolate";
  }
  return "unknown";
}

std::string_view TaskPriorityName(TaskPriority priority) noexcept {
  switch (priority) {
    case TaskPriority::kCritical: return "critical";
    case TaskPriority::kHigh: return "high";
    case TaskPriority::kNormal: return "normal";
    case TaskPriority::kLow: return "low";
  }
  return "unknown";
}

// ---- TierConfig --------------------------------------------------------------

TierConfig TierConfig::Balanced() { return TierConfig{}; }

TierConfig TierConfig::Aggressive() {
  TierConfig c;
  c.poll_budget = 1000;
  c.cpu_threshold_ns = 500'000;
  c.promotion_violations = {1, 2, 4};
  c.demotion_good_polls = 200;
  c.demotion_cpu_threshold_ns = 250'000;
  c.demotion_min_time_ns = 2'000'000'000;
  c.promotion_hysteresis_ns = 50'000'000;
  c.demotion_hysteresis_ns = 1'000'000'000;
  c.violation_cooldown_ns = 2'000'000'000;
  c.yield_budget_fraction = 0.125;
  c.isolate_budget_fraction = 0.0625;
  return c;
}

TierConfig TierConfig::Permissive() {
  TierConfig c;
  c.poll_budget = 5000;
  c.cpu_threshold_ns = 5'000'000;
  c.promotion_violations = {5, 10, 20};
  c.demotion_good_polls = 50;
  c.demotion_cpu_threshold_ns = 2'500'000;
  c.demotion_min_time_ns = 500'000'000;
  c.promotion_hysteresis_ns = 250'000'000;
  c.demotion_hysteresis_ns = 250'000'000;
  c.violation_cooldown_ns = 500'000'000;
  c.yield_budget_fraction = 0.5;
  c.isolate_budget_fraction = 0.25;
  return c;
}

absl::Status TierConfig::Validate() const {
  absl::Status s;
  s.Update(CheckU64("poll_budget", poll_budget, 1, kMaxPollBudget));
  s.Update(CheckU64("cpu_threshold_ns", cpu_threshold_ns, kMinCpuThresholdNs,
                    kMaxCpuThresholdNs));
  for (int i = 0; i < 3; ++i) {
    s.Update(CheckU64(absl::StrCat("promotion_violations[", i, "]"),
                      promotion_violations[i], 1, 1'000'000));
  }
  s.Update(CheckU64("demotion_good_polls", demotion_good_polls, 1,
                    10'000'000));
  s.Update(CheckU64("demotion_cpu_threshold_ns (at most cpu_threshold_ns)",
                    demotion_cpu_threshold_ns, 1, cpu_threshold_ns));
  s.Update(CheckU64("demotion_min_time_ns", demotion_min_time_ns, 0, kHourNs));
  s.Update(CheckU64("promotion_hysteresis_ns", promotion_hysteresis_ns, 0,
                    kHourNs));
  s.Update(CheckU64("demotion_hysteresis_ns", demotion_hysteresis_ns, 0,
                    kHourNs));
  s.Update(CheckU64("violation_cooldown_ns", violation_cooldown_ns, 1,
                    kHourNs));
  s.Update(CheckFraction("yield_budget_fraction", yield_budget_fraction));
  s.Update(CheckFraction("isolate_budget_fraction", isolate_budget_fraction));
  for (int p = 0; p < kNumPriorities; ++p) {
    const std::string prio(TaskPriorityName(static_cast<TaskPriority>(p)));
    s.Update(CheckScale(absl::StrCat("priority_budget_scale[", prio, "]"),
                        priority_budget_scale[p]));
    s.Update(CheckScale(absl::StrCat("priority_threshold_scale[", prio, "]"),
                        priority_threshold_scale[p]));
  }
  return s;  // the first error
}

absl::StatusOr<TierConfig> TierConfig::FromEnv() {
  TierConfig c = Balanced();
  std::string s;
  if (GetEnv("SPINDLE_TIER_PRESET", &s)) {
    const std::string lower = absl::AsciiStrToLower(s);
    if (lower == "aggressive") {
      c = Aggressive();
    } else if (lower == "balanced") {
      c = Balanced();
    } else if (lower == "permissive") {
      c = Permissive();
    } else {
      return EnvError("SPINDLE_TIER_PRESET", s, "is not a preset",
                      "values: aggressive, balanced, permissive");
    }
  }
  bool present = false;
  uint64_t v = 0;
  absl::Status st =
      ParseEnvU64("SPINDLE_BUDGET", 1, kMaxPollBudget, &present, &v);
  if (!st.ok()) return st;
  if (present) c.poll_budget = static_cast<uint32_t>(v);

  st = ParseEnvU64("SPINDLE_CPU_THRESHOLD_NS", kMinCpuThresholdNs,
                   kMaxCpuThresholdNs, &present, &v);
  if (!st.ok()) return st;
  if (present) {
    // Keep the preset's good-poll / violation ratio.
    const double ratio = static_cast<double>(c.demotion_cpu_threshold_ns) /
                         static_cast<double>(c.cpu_threshold_ns);
    c.cpu_threshold_ns = v;
    c.demotion_cpu_threshold_ns = std::max<uint64_t>(
        1, std::min<uint64_t>(v, static_cast<uint64_t>(
                                     static_cast<double>(v) * ratio)));
  }

  if (GetEnv("SPINDLE_TIER_ESCALATION", &s)) {
    const std::string lower = absl::AsciiStrToLower(s);
    if (lower == "true" || lower == "1") {
      c.escalation_enabled = true;
    } else if (lower == "false" || lower == "0") {
      c.escalation_enabled = false;
    } else {
      return EnvError("SPINDLE_TIER_ESCALATION", s, "is not a boolean",
                      "values: true, false, 1, 0");
    }
  }
  absl::Status valid = c.Validate();
  if (!valid.ok()) return valid;
  return c;
}

// ---- TierPolicy --------------------------------------------------------------

absl::StatusOr<TierPolicy> TierPolicy::FromConfig(const TierConfig& config) {
  const timing::Calibration& cal = timing::TscClock::Calibrate();
  return FromConfig(config, cal.ticks_per_second / 1e9);
}

absl::StatusOr<TierPolicy> TierPolicy::FromConfig(const TierConfig& config,
                                                  double ticks_per_ns) {
  if (!(ticks_per_ns >= 1e-6 && ticks_per_ns <= 1e6)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ticks_per_ns = %g is out of range; valid range "
                        "[1e-06, 1e+06]",
                        ticks_per_ns));
  }
  absl::Status valid = config.Validate();
  if (!valid.ok()) return valid;

  TierPolicy p;
  p.config = config;
  const std::array<double, 4> fraction = {1.0, 1.0,
                                          config.yield_budget_fraction,
                                          config.isolate_budget_fraction};
  for (int pr = 0; pr < kNumPriorities; ++pr) {
    const double tscale = config.priority_threshold_scale[pr];
    const double bscale = config.priority_budget_scale[pr];
    const double threshold_ns =
        static_cast<double>(config.cpu_threshold_ns) * tscale;
    p.violation_ticks[pr] = NsToTicks(threshold_ns, ticks_per_ns);
    p.good_poll_ticks[pr] = std::min(
        p.violation_ticks[pr],
        NsToTicks(static_cast<double>(config.demotion_cpu_threshold_ns) *
                      tscale,
                  ticks_per_ns));
    for (int t = 0; t < kNumTiers; ++t) {
      const double ops =
          std::round(static_cast<double>(config.poll_budget) * bscale *
                     fraction[t]);
      p.budget[t][pr] = ops < 1.0 ? 1u : static_cast<uint32_t>(ops);
      // Half the violation threshold: a task that checks YieldMaybe() at
      // least that often yields before its poll can become a violation
      // (with the deadline at the threshold itself, every polite poll ran a
      // little past it and was reported).
      p.deadline_ticks[t][pr] = NsToTicks(
          threshold_ns * fraction[t] * kDeadlineFractionOfThreshold,
          ticks_per_ns);
    }
  }
  p.promotion_violations = config.promotion_violations;
  p.demotion_good_polls = config.demotion_good_polls;
  auto ticks = [&](uint64_t ns) -> uint64_t {
    return ns == 0 ? 0 : NsToTicks(static_cast<double>(ns), ticks_per_ns);
  };
  p.min_ticks_at_tier = ticks(config.demotion_min_time_ns);
  p.promotion_hysteresis_ticks = ticks(config.promotion_hysteresis_ns);
  p.demotion_hysteresis_ticks = ticks(config.demotion_hysteresis_ns);
  p.cooldown_ticks = ticks(config.violation_cooldown_ns);
  p.max_tier = config.escalation_enabled ? Tier::kIsolate : Tier::kWarn;
  p.log_warnings = config.log_warnings;
  p.ns_per_tick_q32 =
      static_cast<uint64_t>(std::llround(4294967296.0 / ticks_per_ns));
  return p;
}

// ---- TierManager -------------------------------------------------------------

TierManager::TierManager(const TierPolicy& policy) : policy_(policy) {
  for (auto& g : tasks_per_tier_) g.store(0, std::memory_order_relaxed);
}

absl::StatusOr<std::unique_ptr<TierManager>> TierManager::Create(
    const TierConfig& config) {
  absl::StatusOr<TierPolicy> policy = TierPolicy::FromConfig(config);
  if (!policy.ok()) return policy.status();
  return Create(*policy);
}

std::unique_ptr<TierManager> TierManager::Create(const TierPolicy& policy) {
  return std::unique_ptr<TierManager>(new TierManager(policy));
}

void TierManager::SetWarningCallback(
    std::function<void(const WarningEvent&)> cb) {
  warning_cb_ = std::move(cb);
}

void TierManager::SetTier(TaskContext& ctx, unsigned from, unsigned to,
                          uint64_t now) noexcept {
  ctx.budget.set_tier(static_cast<uint8_t>(to));
  TierState& st = *ctx.tier_bookkeeping;  // set by the slow poll that led here
  st.violations = 0;
  st.good_polls = 0;
  st.tier_entered_tick = now;
  // Relaxed: gauges, read by Metrics() only.
  tasks_per_tier_[from].fetch_sub(1, std::memory_order_relaxed);
  tasks_per_tier_[to].fetch_add(1, std::memory_order_relaxed);
}

void TierManager::Warn(TaskContext& ctx, uint64_t elapsed_ticks) noexcept {
  const Tier tier = ctx.tier();
  const uint64_t poll_ns = policy_.TicksToNanos(elapsed_ticks);
  Bump(warnings_);
  const uint8_t bit = static_cast<uint8_t>(1u << static_cast<unsigned>(tier));
  TierState& st = *ctx.tier_bookkeeping;  // set by the slow poll (AfterPoll)
  if (policy_.log_warnings && (st.logged_tiers & bit) == 0) {
    st.logged_tiers |= bit;
    Bump(log_lines_);
    const unsigned p = static_cast<unsigned>(ctx.priority) & 3u;
    const std::string_view tier_name = TierName(tier);
    ABSL_RAW_LOG(WARNING,
                 "spindle budget: task %llu (%s) at tier %.*s: poll took %llu "
                 "ns, threshold %llu ns",
                 static_cast<unsigned long long>(ctx.task_id),
                 ctx.name != nullptr ? ctx.name : "unnamed",
                 static_cast<int>(tier_name.size()), tier_name.data(),
                 static_cast<unsigned long long>(poll_ns),
                 static_cast<unsigned long long>(
                     policy_.TicksToNanos(policy_.violation_ticks[p])));
  }
  if (warning_cb_) {
    warning_cb_(WarningEvent{ctx.task_id, ctx.name, tier, poll_ns});
  }
}

Action TierManager::AfterPollSlow(TaskContext& ctx, PollOutcome outcome,
                                  uint64_t elapsed_ticks) noexcept {
  const unsigned p = static_cast<unsigned>(ctx.priority) & 3u;
  const unsigned tier = ctx.budget.tier() & 3u;
  const uint64_t now = ctx.poll_start_tick + elapsed_ticks;
  const bool slow = elapsed_ticks > policy_.violation_ticks[p];
  if (slow) Bump(slow_polls_);
  if (outcome == PollOutcome::kReady) return Action::kNone;

  if (slow) {
    Bump(violations_);
    if (ctx.tier_bookkeeping == nullptr) {
      // The task's first slow poll.  Out of memory (a noexcept path): the
      // violation is counted in the manager's metrics but not against the
      // task, which keeps its tier.
      ctx.tier_bookkeeping.reset(new (std::nothrow) TierState());
      if (ctx.tier_bookkeeping == nullptr) return Action::kNone;
    }
    TierState& st = *ctx.tier_bookkeeping;
    if (st.total_violations != UINT32_MAX) ++st.total_violations;
    if (st.violations > 0 && st.violated_before &&
        now - st.last_violation_tick > policy_.cooldown_ticks) {
      st.violations = 0;
      Bump(cooldowns_);
    }
    if (st.violations != UINT32_MAX) ++st.violations;
    st.last_violation_tick = now;
    st.violated_before = true;
    st.good_polls = 0;
    unsigned new_tier = tier;
    if (tier < static_cast<unsigned>(policy_.max_tier) &&
        st.violations >= policy_.promotion_violations[tier] &&
        (!st.promoted_before ||
         now - st.last_promotion_tick >= policy_.promotion_hysteresis_ticks)) {
      new_tier = tier + 1;
      SetTier(ctx, tier, new_tier, now);
      st.last_promotion_tick = now;
      st.promoted_before = true;
      Bump(promotions_);
    }
    if (new_tier >= static_cast<unsigned>(Tier::kWarn)) {
      Warn(ctx, elapsed_ticks);
    }
    switch (static_cast<Tier>(new_tier)) {
      case Tier::kMonitor: return Action::kNone;
      case Tier::kWarn: return Action::kWarn;
      case Tier::kYield: return Action::kYield;
      case Tier::kIsolate: return Action::kIsolate;
    }
    return Action::kNone;
  }

  // Above kMonitor only through a slow poll, which allocated the state (a
  // tier set by hand without one is left alone).
  if (tier == 0 || ctx.tier_bookkeeping == nullptr) return Action::kNone;
  TierState& st = *ctx.tier_bookkeeping;
  if (elapsed_ticks > policy_.good_poll_ticks[p]) {
    st.good_polls = 0;  // neither good nor a violation: ends the streak
    return Action::kNone;
  }
  if (st.good_polls != UINT32_MAX) ++st.good_polls;
  if (st.good_polls >= policy_.demotion_good_polls &&
      now - st.tier_entered_tick >= policy_.min_ticks_at_tier &&
      (!st.violated_before ||
       now - st.last_violation_tick >= policy_.demotion_hysteresis_ticks)) {
    SetTier(ctx, tier, tier - 1, now);
    Bump(demotions_);
  }
  return Action::kNone;
}

void TierManager::OnYield(TaskContext& ctx) noexcept { Bump(yields_); }

void TierManager::DropBookkeeping(TaskContext& ctx) noexcept {
  ctx.tier_bookkeeping.reset();
}

void TierManager::OnMoveIn(const TaskContext& ctx) noexcept {
  // Owner-thread write, as in OnComplete.
  auto& gauge = tasks_per_tier_[ctx.budget.tier() & 3u];
  gauge.store(gauge.load(std::memory_order_relaxed) + 1,
              std::memory_order_relaxed);
}

TierMetrics TierManager::Metrics() const {
  TierMetrics m;
  // Relaxed: pairs with the relaxed updates; a snapshot of statistics.
  for (int t = 0; t < kNumTiers; ++t) {
    m.tasks_per_tier[t] = tasks_per_tier_[t].load(std::memory_order_relaxed);
  }
  m.promotions = promotions_.load(std::memory_order_relaxed);
  m.demotions = demotions_.load(std::memory_order_relaxed);
  m.violations = violations_.load(std::memory_order_relaxed);
  m.slow_polls = slow_polls_.load(std::memory_order_relaxed);
  m.cooldowns = cooldowns_.load(std::memory_order_relaxed);
  m.warnings = warnings_.load(std::memory_order_relaxed);
  m.log_lines = log_lines_.load(std::memory_order_relaxed);
  m.yields = yields_.load(std::memory_order_relaxed);
  return m;
}

}  // namespace spindle::budget
