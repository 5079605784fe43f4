// dispatch/slurm_launcher.cc: SlurmLauncher and SlurmOptions.
//
// Protocol.
//   Threads: any thread calls Prepare (under `mu_`: pick a node, count the
//   step); the ProcessRunner's thread calls a step's Stop and Finish (Finish
//   uncounts it under `mu_`, drops a failed node, marks the allocation
//   gone); the launcher's canceller thread runs squeue and scancel for
//   every Stop, so that the runner's thread never waits on Slurm.
//   Cancel: a step (or a job of its own) is found by its unique name
//   (`squeue`), then cancelled by id (`scancel`).  Every cancel asked for
//   stays pending until Slurm no longer lists what was found, and the
//   canceller looks for all of them at once every kCancelPoll.  A step that
//   is not listed yet is looked for while srun runs and for kLateStep after
//   it ended: srun interrupted while creating its step may exit (even with
//   status 0) while slurmctld still goes on to create and launch the step.
//   Found and still listed kRecancel after its scancel: cancelled again.
//   A cancel Slurm could not be asked about for kGiveUp is dropped.
//   Shutdown: ~SlurmLauncher runs after every runner holding it is gone, so
//   after every srun has been reaped; it cancels the jobs of their own still
//   pending, stops the canceller and cancels the allocation (which ends its
//   steps).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dispatch/internal/srun_result.h"
#include "dispatch/slurm.h"

namespace spindle::dispatch_internal {

using dispatch::ProcessResult;
using dispatch::ProcessSpec;
using dispatch::SlurmOptions;

class SlurmCore {
 public:
  explicit SlurmCore(SlurmOptions o) : opts_(std::move(o)) {}
  ~SlurmCore();

  absl::Status Allocate();
  absl::StatusOr<dispatch::ProcessLauncher::Prepared> Prepare(
      const ProcessSpec& spec);
  // `ended_at`: when srun was reaped (Unix ns; 0 while it runs).
  void QueueCancel(const SrunStep& step,
                   std::shared_ptr<std::atomic<int64_t>> ended_at);
  void StepEnded(const SrunStep& step, const SrunVerdict& v);
  uint64_t job() const { return job_; }
  std::vector<std::string> live_nodes() const;
  size_t steps_running() const;

 private:
  struct Cancel {
    std::string name;
    uint64_t job = 0;  // 0: a job of its own
    std::shared_ptr<std::atomic<int64_t>> ended_at;
    std::string id;  // Slurm's ("J.S" or "J") once found
    absl::Time queued;
    absl::Time sent = absl::InfinitePast();  // the last scancel
  };
  std::string Cmd(const char* name) const {
    return opts_.commands_dir.empty() ? std::string(name)
                                      : opts_.commands_dir + "/" + name;
  }
  // Adds SLURM_CONF (when set in the options) to `spec`'s environment.
  void AddConf(ProcessSpec& spec) const;
  absl::StatusOr<ProcessResult> Command(const char* name,
                                        std::vector<std::string> args,
                                        absl::Duration timeout) const;
  int64_t TimeLimitMinutes() const {
    return absl::ToInt64Minutes(opts_.time_limit + absl::Minutes(1) -
                                absl::Nanoseconds(1));
  }
  void CancelLoop() noexcept;
  // One look for every pending cancel: scancels those listed, drops those
  // done (or never created); keeps the rest for the next round.
  void CancelRound(std::vector<Cancel>& pending) noexcept;

  const SlurmOptions opts_;
  std::unique_ptr<dispatch::ProcessRunner> commands_;
  uint64_t job_ = 0;
  std::string prefix_;  // step names: prefix_ + sequence number
  std::atomic<uint64_t> seq_{0};

  mutable std::mutex mu_;
  std::vector<std::pair<std::string, int>> nodes_;  // live; steps running
  size_t lost_running_ = 0;  // steps still running on dropped nodes
  bool gone_ = false;                               // the allocation ended
  std::vector<Cancel> cancels_;  // queued; the canceller takes them
  bool stopping_ = false;
  std::condition_variable cancel_cv_;
  std::thread canceller_;
};

namespace {

// How long srun has to end after its step is cancelled before the runner
// kills it: scancel takes a round trip to slurmctld (MessageTimeout at
// worst), the step's end another to srun.
constexpr absl::Duration kCancelWait = absl::Seconds(10);
// The canceller's look at squeue while cancels are pending.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(100);
// How long after srun ended its step may still appear (slurmctld handling
// the creation srun asked for before it died).
constexpr absl::Duration kLateStep = absl::Seconds(10);
// A step still listed this long after its scancel is cancelled again.
constexpr absl::Duration kRecancel = absl::Seconds(2);
// A cancel still pending this long is dropped (Slurm has been unreachable
// all along; the allocation's own cancel, at the end, ends its steps).
constexpr absl::Duration kGiveUp = absl::Minutes(5);

// What one of our steps tells the launcher.
class SlurmProcess final : public dispatch::LaunchedProcess {
 public:
  SlurmProcess(SlurmCore* core, SrunStep step)
      : core_(core),
        step_(std::move(step)),
        ended_at_(std::make_shared<std::atomic<int64_t>>(0)) {}
  // Never finished: srun could not be spawned (Start failed, or the runner
  // was shutting down).  The step never ran: uncount it.
  ~SlurmProcess() override {
    if (!finished_) core_->StepEnded(step_, SrunVerdict{});
  }

  // Cancels the step (once: SIGTERM, then SIGKILL come here).  srun then
  // ends by itself; killed first, it would leave Slurm waiting on its
  // streams, with the step listed for seconds after its task died.
  absl::Duration Stop(int /*sig*/) noexcept override {
    if (!step_.cancelled) {
      step_.cancelled = true;
      core_->QueueCancel(step_, ended_at_);
    }
    return kCancelWait;
  }

  absl::Status Finish(ProcessResult& r) noexcept override {
    // Release: the canceller reads it.
    ended_at_->store(absl::ToUnixNanos(absl::Now()), std::memory_order_release);
    finished_ = true;
    SrunVerdict v = InterpretSrun(step_, r);
    if (step_.cancelled) r.killed = true;  // scancel kills the step
    core_->StepEnded(step_, v);
    return v.status;
  }

 private:
  SlurmCore* const core_;
  SrunStep step_;
  std::shared_ptr<std::atomic<int64_t>> ended_at_;
  bool finished_ = false;  // Finish ran (the runner's thread)
};

}  // namespace

void SlurmCore::AddConf(ProcessSpec& spec) const {
  std::string conf = opts_.conf;
  if (conf.empty() && spec.env_mode == dispatch::EnvMode::kReplace) {
    if (const char* c = std::getenv("SLURM_CONF"); c != nullptr) conf = c;
  }
  if (conf.empty()) return;
  if (spec.env_mode == dispatch::EnvMode::kInherit) {
    spec.env_mode = dispatch::EnvMode::kAdd;
    spec.env.clear();
  }
  spec.env.emplace_back("SLURM_CONF", conf);
}

absl::StatusOr<ProcessResult> SlurmCore::Command(
    const char* name, std::vector<std::string> args,
    absl::Duration timeout) const {
  ProcessSpec spec;
  spec.binary = Cmd(name);
  spec.args = std::move(args);
  spec.timeout = timeout;
  spec.kill_grace = absl::Seconds(1);
  AddConf(spec);
  absl::StatusOr<ProcessResult> r = commands_->Run(spec);
  if (!r.ok()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Slurm's '%s' could not be run (%s); install Slurm's client commands "
        "(Debian: slurm-client) or set SlurmOptions::commands_dir",
        spec.binary, r.status().message()));
  }
  return r;
}

absl::Status SlurmCore::Allocate() {
  absl::StatusOr<std::unique_ptr<dispatch::ProcessRunner>> runner =
      dispatch::ProcessRunner::Create({});
  if (!runner.ok()) return runner.status();
  commands_ = std::move(*runner);

  const int64_t wait_s =
      std::max<int64_t>(1, absl::ToInt64Seconds(opts_.allocation_wait));
  std::vector<std::string> args = {
      "--no-shell",
      "--no-kill",
      absl::StrFormat("--nodes=%d", opts_.nodes),
      "--ntasks-per-node=1",
      absl::StrFormat("--cpus-per-task=%d", opts_.cpus_per_node),
      absl::StrFormat("--job-name=spindle-%d", ::getpid()),
      absl::StrFormat("--immediate=%d", wait_s),
      absl::StrFormat("--time=%d", TimeLimitMinutes())};
  if (!opts_.partition.empty()) args.push_back("--partition=" + opts_.partition);
  if (!opts_.account.empty()) args.push_back("--account=" + opts_.account);
  absl::StatusOr<ProcessResult> r =
      Command("salloc", std::move(args), opts_.allocation_wait + absl::Seconds(30));
  if (!r.ok()) return r.status();
  const std::string both = r->stderr_data + r->stdout_data;
  const std::string marker = "Granted job allocation ";
  const size_t at = both.find(marker);
  uint64_t job = 0;
  if (at != std::string::npos) {
    const size_t from = at + marker.size();
    const size_t to = both.find_first_not_of("0123456789", from);
    (void)absl::SimpleAtoi(both.substr(from, to - from), &job);
  }
  if (job == 0) {
    return absl::UnavailableError(absl::StrFormat(
        "salloc granted no allocation of %d nodes x %d CPUs within %s "
        "(exit code %d): %s",
        opts_.nodes, opts_.cpus_per_node,
        absl::FormatDuration(opts_.allocation_wait), r->exit_code,
        absl::StripAsciiWhitespace(both)));
  }
  job_ = job;
  prefix_ = absl::StrFormat("spindle-%d-%d-", ::getpid(), job_);

  // Its nodes: "n[1-2]", then one name per line.
  absl::StatusOr<ProcessResult> list = Command(
      "squeue", {"-h", "-j", absl::StrCat(job_), "-o", "%N"}, absl::Seconds(30));
  absl::StatusOr<ProcessResult> names;
  if (list.ok() && list->exit_code == 0) {
    names = Command(
        "scontrol",
        {"show", "hostnames", std::string(absl::StripAsciiWhitespace(list->stdout_data))},
        absl::Seconds(30));
  }
  if (names.ok() && names->exit_code == 0) {
    for (absl::string_view n :
         absl::StrSplit(names->stdout_data, '\n', absl::SkipWhitespace())) {
      nodes_.emplace_back(std::string(absl::StripAsciiWhitespace(n)), 0);
    }
  }
  if (nodes_.empty()) {
    const absl::Status why = absl::UnavailableError(absl::StrFormat(
        "Slurm job %d was granted but its nodes could not be read (squeue: "
        "%s)",
        job_, list.ok() ? absl::StripAsciiWhitespace(list->stderr_data)
                        : list.status().message()));
    (void)Command("scancel", {absl::StrCat(job_)}, absl::Seconds(30));
    job_ = 0;
    return why;
  }
  canceller_ = std::thread([this] { CancelLoop(); });
  return absl::OkStatus();
}

SlurmCore::~SlurmCore() {
  if (canceller_.joinable()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    cancel_cv_.notify_all();
    canceller_.join();
  }
  if (job_ != 0) (void)Command("scancel", {absl::StrCat(job_)}, absl::Seconds(30));
}

std::vector<std::string> SlurmCore::live_nodes() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [n, running] : nodes_) out.push_back(n);
  return out;
}

size_t SlurmCore::steps_running() const {
  std::lock_guard<std::mutex> l(mu_);
  size_t n = 0;
  for (const auto& [node, running] : nodes_) n += static_cast<size_t>(running);
  return n + lost_running_;
}

absl::StatusOr<dispatch::ProcessLauncher::Prepared> SlurmCore::Prepare(
    const ProcessSpec& spec) {
  SrunStep step;
  step.name = prefix_ + absl::StrCat(seq_.fetch_add(1, std::memory_order_relaxed));
  step.binary = spec.binary;
  std::vector<std::string> args;
  if (spec.cpus > opts_.cpus_per_node) {
    // More CPUs than a node of the allocation has: a job of its own.
    args = {"--nodes=1", "--ntasks=1",
            absl::StrFormat("--cpus-per-task=%d", spec.cpus),
            absl::StrFormat("--time=%d", TimeLimitMinutes())};
    if (!opts_.partition.empty()) args.push_back("--partition=" + opts_.partition);
    if (!opts_.account.empty()) args.push_back("--account=" + opts_.account);
  } else {
    std::lock_guard<std::mutex> l(mu_);
    if (gone_) {
      return absl::UnavailableError(absl::StrFormat(
          "Slurm allocation %d has ended (time limit or cancelled); no step "
          "can start in it: create a new SlurmLauncher",
          job_));
    }
    if (nodes_.empty()) {
      return absl::UnavailableError(absl::StrFormat(
          "every node of Slurm allocation %d has failed; no step can start "
          "in it: create a new SlurmLauncher",
          job_));
    }
    auto least = std::min_element(
        nodes_.begin(), nodes_.end(),
        [](const auto& a, const auto& b) { return a.second < b.second; });
    ++least->second;
    step.job = job_;
    step.node = least->first;
    args = {absl::StrFormat("--jobid=%d", job_), "--overlap", "--nodes=1",
            "--ntasks=1", "--nodelist=" + step.node};
  }
  args.push_back("--job-name=" + step.name);
  args.push_back("--quiet");
  if (!spec.working_dir.empty()) args.push_back("--chdir=" + spec.working_dir);
  args.push_back("--");
  args.push_back(spec.binary);
  args.insert(args.end(), spec.args.begin(), spec.args.end());

  dispatch::ProcessLauncher::Prepared p;
  p.command = spec;  // env, stdin, timeout, grace, caps: as the spec's
  p.command.binary = Cmd("srun");
  p.command.args = std::move(args);
  p.command.working_dir.clear();  // srun runs here; the task in --chdir
  p.command.cpus = 1;
  AddConf(p.command);
  p.process = std::make_unique<SlurmProcess>(this, std::move(step));
  return p;
}

void SlurmCore::StepEnded(const SrunStep& step, const SrunVerdict& v) {
  std::lock_guard<std::mutex> l(mu_);
  if (v.allocation_gone) gone_ = true;
  if (step.job == 0) return;  // a job of its own: not counted
  auto it = std::find_if(nodes_.begin(), nodes_.end(),
                         [&](const auto& n) { return n.first == step.node; });
  if (it != nodes_.end()) {
    --it->second;
  } else {
    --lost_running_;  // its node was dropped while it ran
  }
  if (!v.failed_node.empty()) {
    auto failed = std::find_if(
        nodes_.begin(), nodes_.end(),
        [&](const auto& n) { return n.first == v.failed_node; });
    if (failed != nodes_.end()) {
      lost_running_ += static_cast<size_t>(failed->second);
      nodes_.erase(failed);
    }
  }
}

void SlurmCore::QueueCancel(const SrunStep& step,
                             std::shared_ptr<std::atomic<int64_t>> ended_at) {
  {
    std::lock_guard<std::mutex> l(mu_);
    Cancel c;
    c.name = step.name;
    c.job = step.job;
    c.ended_at = std::move(ended_at);
    c.queued = absl::Now();
    cancels_.push_back(std::move(c));
  }
  cancel_cv_.notify_one();
}

void SlurmCore::CancelLoop() noexcept {
  std::vector<Cancel> pending;
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    if (pending.empty()) {
      cancel_cv_.wait(l, [&] { return stopping_ || !cancels_.empty(); });
    } else {
      cancel_cv_.wait_for(l, absl::ToChronoNanoseconds(kCancelPoll),
                          [&] { return stopping_; });
    }
    for (Cancel& c : cancels_) pending.push_back(std::move(c));
    cancels_.clear();
    if (stopping_) {
      // Every srun has been reaped and the allocation is cancelled next,
      // which ends its steps; a job of its own must still be cancelled.
      l.unlock();
      for (const Cancel& c : pending) {
        if (c.job == 0) {
          (void)Command("scancel", {"--name=" + c.name}, absl::Seconds(30));
        }
      }
      return;
    }
    l.unlock();
    CancelRound(pending);
    l.lock();
  }
}

void SlurmCore::CancelRound(std::vector<Cancel>& pending) noexcept {
  // What Slurm lists now: "id name" lines, for the allocation's steps and
  // for the jobs of their own sought.
  std::vector<std::string> own_names;
  bool steps_sought = false;
  for (const Cancel& c : pending) {
    if (c.job == 0) {
      own_names.push_back(c.name);
    } else {
      steps_sought = true;
    }
  }
  std::vector<std::pair<std::string, std::string>> listed;  // name, id
  auto list = [&](std::vector<std::string> args) {
    absl::StatusOr<ProcessResult> r = Command("squeue", std::move(args),
                                              absl::Seconds(30));
    if (!r.ok() || r->exit_code != 0) return false;
    for (absl::string_view line :
         absl::StrSplit(r->stdout_data, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f =
          absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() == 2) listed.emplace_back(f[1], f[0]);
    }
    return true;
  };
  // A failed look tells nothing about what it sought: those wait for the
  // next round.
  const bool steps_seen =
      steps_sought &&
      list({"-h", "-s", "-j", absl::StrCat(job_), "-o", "%i %j"});
  const bool own_seen =
      !own_names.empty() &&
      list({"-h", "-o", "%i %j", "-n", absl::StrJoin(own_names, ",")});

  const absl::Time now = absl::Now();
  std::vector<std::string> to_cancel;
  std::vector<Cancel> kept;
  for (Cancel& c : pending) {
    if (now - c.queued > kGiveUp) continue;  // Slurm unreachable that long
    if (!(c.job == 0 ? own_seen : steps_seen)) {
      kept.push_back(std::move(c));
      continue;
    }
    auto it = std::find_if(listed.begin(), listed.end(),
                           [&](const auto& e) { return e.first == c.name; });
    if (it != listed.end()) {  // listed: cancel it (again, if it lingers)
      c.id = it->second;
      if (now - c.sent >= kRecancel) {
        to_cancel.push_back(c.id);
        c.sent = now;
      }
      kept.push_back(std::move(c));
      continue;
    }
    if (!c.id.empty()) continue;  // found before, gone now: done
    // Acquire: pairs with the release store in SlurmProcess::Finish.
    const int64_t ended = c.ended_at->load(std::memory_order_acquire);
    if (ended != 0 && now - absl::FromUnixNanos(ended) > kLateStep) {
      continue;  // srun ended long ago and no step appeared: none will
    }
    kept.push_back(std::move(c));
  }
  pending = std::move(kept);
  if (!to_cancel.empty()) {
    (void)Command("scancel", std::move(to_cancel), absl::Seconds(30));
  }
}

}  // namespace spindle::dispatch_internal

namespace spindle::dispatch {

absl::StatusOr<std::shared_ptr<SlurmLauncher>> SlurmLauncher::Create(
    const SlurmOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  auto core = std::make_unique<dispatch_internal::SlurmCore>(options);
  if (absl::Status s = core->Allocate(); !s.ok()) return s;
  return std::shared_ptr<SlurmLauncher>(new SlurmLauncher(std::move(core)));
}

SlurmLauncher::SlurmLauncher(std::unique_ptr<dispatch_internal::SlurmCore> core)
    : core_(std::move(core)) {}

SlurmLauncher::~SlurmLauncher() = default;

uint64_t SlurmLauncher::job_id() const { return core_->job(); }

std::vector<std::string> SlurmLauncher::live_nodes() const {
  return core_->live_nodes();
}

size_t SlurmLauncher::steps_running() const { return core_->steps_running(); }

absl::StatusOr<ProcessLauncher::Prepared> SlurmLauncher::Prepare(
    const ProcessSpec& spec) {
  return core_->Prepare(spec);
}

}  // namespace spindle::dispatch
