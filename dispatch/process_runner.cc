// dispatch/process_runner.cc: ProcessRunner and ProcessHandle.
//
// Protocol.
//   Threads: callers of Start (spawn on their own thread, then hand over),
//   handle users (Wait, Kill), and the runner's thread, which alone touches
//   the reactor and every `Proc`.
//   Hand-over: Start pushes the new Proc onto `inbox_` under `inbox_mu_` and
//   calls Reactor::Wake; the runner's thread swaps the inbox out after each
//   Poll.  Kill requests travel the same way (`kills_`).
//   One Proc's life on the runner's thread (each step starts reactor
//   operations whose callbacks call Advance):
//     1. Begin: read stdout and stderr, poll the pidfd, send stdin, arm the
//        timeout timer.
//     2. Timer fires before exit: SIGTERM to the group, then the grace
//        timer; it fires: SIGKILL.  A timer that fires after the exit does
//        nothing (the group id may already be reused).
//     3. The pidfd polls readable: waitid(P_PIDFD, WEXITED) reaps the child.
//        Any timer still armed is cancelled and the drain timer armed.
//     4. Drain timer fires: the reads still pending are cancelled (their
//        callbacks then see -ECANCELED) and the result says drain_cut.
//     5. When the child is reaped, both streams are at EOF (or cut), stdin
//        is done and no timer is armed: Finish closes every descriptor,
//        publishes the result under the handle's mutex and deletes the Proc.
//   A launcher (dispatch/launcher.h) prepares the command that Start spawns;
//   its LaunchedProcess is told before each signal (KillGroup) and rewrites
//   the result in Finish, before it is published.
//   Shutdown: 1. ~ProcessRunner sets `stopping_` (Start refuses from then
//   on) and wakes the thread; 2. the thread SIGKILLs every live group and
//   cuts the drains of reaped ones; 3. it polls until no Proc is left, then
//   returns; 4. the destructor joins it; every handle has its result.
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "dispatch/internal/process_shared.h"
#include "dispatch/internal/spawn.h"
#include "dispatch/launcher.h"
#include "dispatch/process.h"
#include "reactor/reactor.h"
#include "timing/clock.h"

#ifndef P_PIDFD
#define P_PIDFD 3  // Linux 5.4+; older glibc headers lack the name.
#endif

namespace spindle::dispatch_internal {

using dispatch::ProcessResult;
using reactor::Operation;
using timing::MonotonicClock;

struct Proc;

struct Stream {
  Operation op;
  Proc* proc = nullptr;
  int fd = -1;
  std::string data;
  size_t len = 0;
  bool eof = false;
  bool truncated = false;
};

enum class TimerPhase : uint8_t { kNone, kTimeout, kGrace, kDrain };

struct Proc {
  RunnerCore* core = nullptr;
  std::shared_ptr<ProcessShared> shared;
  Spawned sp;
  std::string stdin_data;
  size_t stdin_off = 0;
  uint64_t start_ns = 0;
  uint64_t timeout_ns = 0;  // 0: none
  uint64_t grace_ns = 0;
  uint64_t drain_ns = 0;
  size_t cap = 0;
  Stream out, err;
  Operation exit_op, timer_op, stdin_op;
  Operation kill_op;  // a SIGKILL the launcher asked to defer
  TimerPhase phase = TimerPhase::kNone;
  bool exited = false;
  bool stdin_done = false;
  ProcessResult result;
  std::unique_ptr<dispatch::LaunchedProcess> launched;  // null: local
};

class RunnerCore {
 public:
  RunnerCore(std::unique_ptr<reactor::Reactor> r,
             std::shared_ptr<dispatch::ProcessLauncher> launcher)
      : reactor_(std::move(r)), launcher_(std::move(launcher)) {}

  dispatch::ProcessLauncher* launcher() const { return launcher_.get(); }

  void StartThread() {
    thread_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    // A ProcessDoneCallback runs on the runner's thread, which the join
    // below waits for.
    if (std::this_thread::get_id() == thread_.get_id()) [[unlikely]] {
      ABSL_RAW_LOG(FATAL,
                   "spindle: ProcessRunner destroyed on its own thread (by a "
                   "ProcessDoneCallback): its destructor joins that thread; "
                   "destroy it from another thread");
    }
    {
      std::lock_guard<std::mutex> l(inbox_mu_);
      stopping_ = true;
      reactor_->Wake();  // under inbox_mu_: see Loop
    }
    thread_.join();
  }

  // false: the runner is stopping; the caller keeps `p`.
  bool Hand(Proc* p) {
    {
      std::lock_guard<std::mutex> l(inbox_mu_);
      if (stopping_) return false;
      inbox_.push_back(p);
      running_.fetch_add(1, std::memory_order_relaxed);  // a statistic
      reactor_->Wake();  // under inbox_mu_: see Loop
    }
    return true;
  }

  void RequestKill(std::shared_ptr<ProcessShared> s) {
    {
      std::lock_guard<std::mutex> l(inbox_mu_);
      kills_.push_back(std::move(s));
      reactor_->Wake();  // under inbox_mu_: see Loop
    }
  }

  size_t running() const { return running_.load(std::memory_order_relaxed); }

 private:
  void Loop() noexcept;
  void Begin(Proc* p) noexcept;
  void ReadMore(Stream* s) noexcept;
  void SendMore(Proc* p) noexcept;
  void KillGroup(Proc* p, int sig) noexcept;
  void CutDrain(Proc* p) noexcept;
  void Advance(Proc* p) noexcept;
  void Finish(Proc* p) noexcept;
  static void OnRead(Operation* op) noexcept;
  static void OnSend(Operation* op) noexcept;
  static void OnExit(Operation* op) noexcept;
  static void OnTimer(Operation* op) noexcept;
  static void OnKillDue(Operation* op) noexcept;

  std::unique_ptr<reactor::Reactor> reactor_;
  // Outlives every Proc's LaunchedProcess (Stop joins the thread first).
  std::shared_ptr<dispatch::ProcessLauncher> launcher_;
  std::thread thread_;
  std::mutex inbox_mu_;
  std::vector<Proc*> inbox_;                          // guarded by inbox_mu_
  std::vector<std::shared_ptr<ProcessShared>> kills_;  // guarded by inbox_mu_
  bool stopping_ = false;                             // guarded by inbox_mu_
  std::atomic<size_t> running_{0};
  std::unordered_set<Proc*> live_;  // the runner's thread only
  // Where bytes past output_cap go.  Only the kernel writes it, and nobody
  // reads it.
  char discard_[64 * 1024];
};

void RequestKill(RunnerCore* core, std::shared_ptr<ProcessShared> s) {
  core->RequestKill(std::move(s));
}

void RunnerCore::Loop() noexcept {
  bool stop_handled = false;
  for (;;) {
    reactor_->Poll(UINT64_MAX);
    std::vector<Proc*> starts;
    std::vector<std::shared_ptr<ProcessShared>> kills;
    bool stop;
    {
      std::lock_guard<std::mutex> l(inbox_mu_);
      starts.swap(inbox_);
      kills.swap(kills_);
      stop = stopping_;
    }
    for (Proc* p : starts) {
      live_.insert(p);
      Begin(p);
    }
    for (const auto& s : kills) {
      if (s->proc != nullptr) KillGroup(s->proc, SIGKILL);
    }
    if (stop) {
      if (!stop_handled) {
        stop_handled = true;
        for (Proc* p : live_) {
          if (!p->exited) {
            KillGroup(p, SIGKILL);
          } else {
            CutDrain(p);
          }
        }
      }
      if (live_.empty()) {
        // Wakes happen under inbox_mu_, so none can reach a destroyed
        // reactor; destroyed here, on its owner thread.
        std::lock_guard<std::mutex> l(inbox_mu_);
        if (inbox_.empty()) {
          reactor_.reset();
          return;
        }
      }
    }
  }
}

void RunnerCore::Begin(Proc* p) noexcept {
  p->shared->proc = p;
  for (Stream* s : {&p->out, &p->err}) {
    s->proc = p;
    s->op.user = s;
    s->op.on_complete = &OnRead;
    ReadMore(s);
  }
  p->exit_op.user = p;
  p->exit_op.on_complete = &OnExit;
  reactor_->PollReadable(&p->exit_op, p->sp.pidfd);
  p->stdin_op.user = p;
  p->stdin_op.on_complete = &OnSend;
  if (p->sp.stdin_fd >= 0) {
    SendMore(p);
  } else {
    p->stdin_done = true;
  }
  p->timer_op.user = p;
  p->timer_op.on_complete = &OnTimer;
  p->kill_op.user = p;
  p->kill_op.on_complete = &OnKillDue;
  if (p->timeout_ns != 0) {
    p->phase = TimerPhase::kTimeout;
    reactor_->SleepUntil(&p->timer_op, p->start_ns + p->timeout_ns);
  }
}

void RunnerCore::ReadMore(Stream* s) noexcept {
  const size_t cap = s->proc->cap;
  if (s->len < cap) {
    // Grow with the output: small children cost a small buffer.
    const size_t chunk =
        std::min({std::max<size_t>(4096, s->len), size_t{64} << 10, cap - s->len});
    s->data.resize(s->len + chunk);
    reactor_->Read(&s->op, s->fd, s->data.data() + s->len, chunk, -1);
  } else {
    reactor_->Read(&s->op, s->fd, discard_, sizeof(discard_), -1);
  }
}


void RunnerCore::SendMore(Proc* p) noexcept {
  reactor_->Send(&p->stdin_op, p->sp.stdin_fd,
                 p->stdin_data.data() + p->stdin_off,
                 p->stdin_data.size() - p->stdin_off, MSG_NOSIGNAL);
}

void RunnerCore::KillGroup(Proc* p, int sig) noexcept {
  if (p->exited) return;  // reaped: the group id may belong to others now
  if (p->launched != nullptr) {
    const absl::Duration wait = p->launched->Stop(sig);
    if (sig == SIGKILL && wait > absl::ZeroDuration()) {
      // The launcher stops it its own way first; OnKillDue kills it if it
      // has not ended by then.
      if (!p->kill_op.pending()) {
        reactor_->SleepFor(&p->kill_op, static_cast<uint64_t>(
                                            absl::ToInt64Nanoseconds(wait)));
      }
      return;
    }
  }
  ::kill(-p->sp.pid, sig);
  if (sig == SIGKILL) p->result.killed = true;
}

void RunnerCore::OnKillDue(Operation* op) noexcept {
  auto* p = static_cast<Proc*>(op->user);
  if (op->result == 0 && !p->exited) {  // fired before the exit
    ::kill(-p->sp.pid, SIGKILL);
    p->result.killed = true;
  }
  p->core->Advance(p);
}

void RunnerCore::CutDrain(Proc* p) noexcept {
  bool cut = false;
  for (Stream* s : {&p->out, &p->err}) {
    if (s->op.pending()) {
      reactor_->Cancel(&s->op);
      cut = true;
    }
  }
  if (p->stdin_op.pending()) reactor_->Cancel(&p->stdin_op);
  if (cut) p->result.drain_cut = true;
}

void RunnerCore::OnRead(Operation* op) noexcept {
  auto* s = static_cast<Stream*>(op->user);
  Proc* p = s->proc;
  const int r = op->result;
  if (r > 0) {
    if (s->len < p->cap) {
      s->len += static_cast<size_t>(r);
    } else {
      s->truncated = true;
    }
    p->core->ReadMore(s);
    return;
  }
  if (r == -EINTR || r == -EAGAIN) {
    p->core->ReadMore(s);
    return;
  }
  s->eof = true;  // EOF, an error, or cut by the drain bound
  s->data.resize(s->len);
  p->core->Advance(p);
}

void RunnerCore::OnSend(Operation* op) noexcept {
  auto* p = static_cast<Proc*>(op->user);
  const int r = op->result;
  if (r > 0) p->stdin_off += static_cast<size_t>(r);
  if ((r > 0 || r == -EINTR || r == -EAGAIN) &&
      p->stdin_off < p->stdin_data.size()) {
    p->core->SendMore(p);
    return;
  }
  // All sent, or the child stopped reading (EPIPE): either way, EOF.
  ::close(p->sp.stdin_fd);
  p->sp.stdin_fd = -1;
  p->stdin_done = true;
  p->core->Advance(p);
}

void RunnerCore::OnExit(Operation* op) noexcept {
  auto* p = static_cast<Proc*>(op->user);
  siginfo_t si{};
  const int rc = ::waitid(static_cast<idtype_t>(P_PIDFD),
                          static_cast<id_t>(p->sp.pidfd), &si,
                          WEXITED | WNOHANG);
  if (rc == 0 && si.si_pid == 0) {  // not yet: poll again
    p->core->reactor_->PollReadable(&p->exit_op, p->sp.pidfd);
    return;
  }
  p->exited = true;
  if (rc != 0) {
    // ECHILD: someone else reaped it (see ProcessRunner's Requires).
    p->result.exit_code = -1;
  } else if (si.si_code == CLD_EXITED) {
    p->result.exit_code = si.si_status;
  } else {
    p->result.term_signal = si.si_status;
  }
  p->core->Advance(p);
}

void RunnerCore::OnTimer(Operation* op) noexcept {
  auto* p = static_cast<Proc*>(op->user);
  RunnerCore* core = p->core;
  const TimerPhase phase = p->phase;
  p->phase = TimerPhase::kNone;
  if (op->result == 0) {  // fired
    if (phase == TimerPhase::kDrain) {
      core->CutDrain(p);
    } else if (!p->exited && phase == TimerPhase::kTimeout) {
      p->result.timed_out = true;
      if (p->grace_ns == 0) {
        core->KillGroup(p, SIGKILL);
      } else {
        core->KillGroup(p, SIGTERM);
        p->phase = TimerPhase::kGrace;
        core->reactor_->SleepFor(&p->timer_op, p->grace_ns);
        return;
      }
    } else if (!p->exited && phase == TimerPhase::kGrace) {
      core->KillGroup(p, SIGKILL);
    }
  }
  core->Advance(p);
}

void RunnerCore::Advance(Proc* p) noexcept {
  if (!p->exited) return;
  if (p->kill_op.pending()) {  // moot once reaped; OnKillDue comes back
    reactor_->Cancel(&p->kill_op);
    return;
  }
  const bool streams_done = p->out.eof && p->err.eof && p->stdin_done;
  if (p->timer_op.pending()) {
    // A timeout or grace timer is moot once the child is reaped; a drain
    // timer is moot once the streams are done.
    if (p->phase != TimerPhase::kDrain || streams_done) {
      reactor_->Cancel(&p->timer_op);
    }
    return;  // OnTimer comes back here
  }
  if (!streams_done) {
    if (p->phase != TimerPhase::kDrain && !p->result.drain_cut) {
      p->phase = TimerPhase::kDrain;
      reactor_->SleepFor(&p->timer_op, p->drain_ns);
    }
    return;
  }
  Finish(p);
}

void RunnerCore::Finish(Proc* p) noexcept {
  for (int* fd : {&p->sp.pidfd, &p->sp.stdout_fd, &p->sp.stderr_fd,
                  &p->sp.stdin_fd}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  ProcessResult r = std::move(p->result);
  r.stdout_data = std::move(p->out.data);
  r.stderr_data = std::move(p->err.data);
  r.stdout_truncated = p->out.truncated;
  r.stderr_truncated = p->err.truncated;
  r.duration = absl::Nanoseconds(MonotonicClock::Now() - p->start_ns);
  absl::Status status;
  if (p->launched != nullptr) status = p->launched->Finish(r);
  std::shared_ptr<ProcessShared> shared = std::move(p->shared);
  shared->proc = nullptr;
  live_.erase(p);
  delete p;
  running_.fetch_sub(1, std::memory_order_relaxed);  // a statistic
  std::vector<std::unique_ptr<dispatch::ProcessDoneCallback>> callbacks;
  {
    std::lock_guard<std::mutex> l(shared->mu);
    shared->result = std::move(r);
    shared->status_code = status.code();
    shared->status_message = std::string(status.message());
    // Release: pairs with the acquire load in ProcessHandle::done.
    shared->done.store(true, std::memory_order_release);
    callbacks.swap(shared->on_done);
  }
  shared->cv.notify_all();
  // Outside mu: a callback may look at the handle (done(), Wait()).
  for (auto& cb : callbacks) cb->Done();
}

}  // namespace spindle::dispatch_internal

namespace spindle::dispatch {

using dispatch_internal::ProcessShared;
using timing::MonotonicClock;

// ---- ProcessRunner ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ProcessRunner>> ProcessRunner::Create(
    const ProcessRunnerOptions& options) {
  reactor::ReactorOptions ro;
  absl::StatusOr<reactor::BackendChoice> backend =
      reactor::ReactorOptions::ParseBackend(options.backend);
  if (!backend.ok()) return backend.status();
  ro.backend = *backend;
  absl::StatusOr<std::unique_ptr<reactor::Reactor>> r =
      reactor::Reactor::Create(ro);
  if (!r.ok()) return r.status();
  auto core = std::make_unique<dispatch_internal::RunnerCore>(
      std::move(*r), options.launcher);
  core->StartThread();
  return std::unique_ptr<ProcessRunner>(new ProcessRunner(std::move(core)));
}

ProcessRunner::ProcessRunner(
    std::unique_ptr<dispatch_internal::RunnerCore> core)
    : core_(std::move(core)) {}

ProcessRunner::~ProcessRunner() { core_->Stop(); }

size_t ProcessRunner::running() const { return core_->running(); }

absl::StatusOr<ProcessHandle> ProcessRunner::Start(const ProcessSpec& spec) {
  if (absl::Status s = spec.Validate(); !s.ok()) return s;
  const uint64_t start = MonotonicClock::Now();
  std::unique_ptr<LaunchedProcess> launched;
  absl::StatusOr<ProcessLauncher::Prepared> prepared;
  if (ProcessLauncher* l = core_->launcher(); l != nullptr) {
    prepared = l->Prepare(spec);
    if (!prepared.ok()) return prepared.status();
    launched = std::move(prepared->process);
  }
  const ProcessSpec& run = launched != nullptr ? prepared->command : spec;
  absl::StatusOr<dispatch_internal::Spawned> sp = dispatch_internal::Spawn(run);
  if (!sp.ok()) return sp.status();
  auto shared = std::make_shared<ProcessShared>();
  shared->core = core_.get();
  shared->pid = sp->pid;
  auto* p = new dispatch_internal::Proc;
  p->core = core_.get();
  p->shared = shared;
  p->sp = *sp;
  p->out.fd = sp->stdout_fd;
  p->err.fd = sp->stderr_fd;
  p->stdin_data = run.stdin_data;
  p->start_ns = start;
  if (run.timeout != absl::InfiniteDuration()) {
    p->timeout_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(run.timeout));
  }
  p->grace_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(run.kill_grace));
  p->drain_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(run.drain_bound));
  p->cap = run.output_cap;
  p->launched = std::move(launched);
  if (!core_->Hand(p)) {
    // Shutting down: take the child back down ourselves.
    ::kill(-sp->pid, SIGKILL);
    siginfo_t si;
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(sp->pidfd), &si,
             WEXITED);
    for (int fd : {sp->pidfd, sp->stdout_fd, sp->stderr_fd, sp->stdin_fd}) {
      if (fd >= 0) ::close(fd);
    }
    delete p;
    return absl::FailedPreconditionError(absl::StrFormat(
        "ProcessRunner is shutting down; '%s' was not run", spec.binary));
  }
  return ProcessHandle(std::move(shared));
}

absl::StatusOr<ProcessResult> ProcessRunner::Run(const ProcessSpec& spec) {
  absl::StatusOr<ProcessHandle> h = Start(spec);
  if (!h.ok()) return h.status();
  if (absl::Status s = h->status(); !s.ok()) return s;
  return h->Wait();
}

}  // namespace spindle::dispatch
