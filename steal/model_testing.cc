// Protocol of the explorer (one OS thread; the simulated threads are fibers).
//   Each execution: reset location ids, call make(), start every fiber and
//   run it to its first atomic access (code before it touches only its own
//   state).  Then repeat: every live fiber is parked in Access() with its
//   pending access recorded; pick one (replaying the current DFS path, or
//   the first choice outside the sleep set at a new depth), switch to it; it
//   performs the access and runs to its next access or to its end, then
//   switches back.  When no fiber is live, run verify() and outcome().
//   A new depth whose every live fiber is asleep is redundant: the fibers are
//   run to completion in index order (so their frames unwind) and the
//   execution is not counted.
//   Fibers are created once per exploration and loop: run this execution's
//   body, park as finished, wait for the next execution's body.
//   After each execution, backtrack: the deepest node with an unexplored,
//   non-sleeping choice takes it, deeper nodes are dropped.  Done when the
//   path is empty.
#include "steal/model_testing.h"

#include <ucontext.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SPINDLE_MODEL_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define SPINDLE_MODEL_TSAN 1
#endif

namespace spindle::steal_testing {
namespace {

constexpr size_t kStackSize = 256 * 1024;
constexpr int kMaxThreads = 32;

struct Pending {
  int location = -1;
  bool write = false;
};

struct Node {
  std::vector<Pending> pending;
  uint32_t enabled = 0;
  uint32_t sleep = 0;
  uint32_t done = 0;
  int chosen = -1;
};

bool Independent(const Pending& a, const Pending& b) {
  return a.location != b.location || (!a.write && !b.write);
}

int Lowest(uint32_t mask) { return __builtin_ctz(mask); }

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  bool created = false;
  bool live = false;
  Pending pending;
  std::function<void()>* body = nullptr;
#if SPINDLE_MODEL_TSAN
  void* tsan_fiber = nullptr;
#endif
};

class Run {
 public:
  explicit Run(size_t threads) : fibers_(threads) {
    for (Fiber& f : fibers_) f.stack.reset(new char[kStackSize]);
#if SPINDLE_MODEL_TSAN
    main_tsan_ = __tsan_get_current_fiber();
    for (Fiber& f : fibers_) f.tsan_fiber = __tsan_create_fiber(0);
#endif
  }
  ~Run() {
#if SPINDLE_MODEL_TSAN
    for (Fiber& f : fibers_) __tsan_destroy_fiber(f.tsan_fiber);
#endif
  }

  // Main context: run fiber i's `body` up to its first access (or end).
  // A fiber is created once and loops over bodies, one per execution, so
  // its frames (and the sanitizers' view of its stack) stay balanced.
  void Start(int i, std::function<void()>* body) {
    Fiber& f = fibers_[i];
    if (!f.created) {
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack.get();
      f.context.uc_stack.ss_size = kStackSize;
      f.context.uc_link = nullptr;
      makecontext(&f.context, &Run::Entry, 0);
      f.created = true;
    }
    f.live = true;
    f.pending = Pending{};
    f.body = body;
    SwitchTo(i);
  }

  // Main context: resume fiber i until it parks or ends.
  void SwitchTo(int i) {
    current_ = i;
#if SPINDLE_MODEL_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, fibers_[i].stack.get(), kStackSize);
#endif
#if SPINDLE_MODEL_TSAN
    __tsan_switch_to_fiber(fibers_[i].tsan_fiber, 0);
#endif
    swapcontext(&main_, &fibers_[i].context);
#if SPINDLE_MODEL_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    current_ = -1;
  }

  // Fiber context: park with `p` pending, or (ending) with the body done.
  void Park(const Pending& p, bool ending) {
    Fiber& f = fibers_[current_];
    f.pending = p;
    if (ending) f.live = false;
#if SPINDLE_MODEL_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, main_bottom_, main_size_);
#endif
#if SPINDLE_MODEL_TSAN
    __tsan_switch_to_fiber(main_tsan_, 0);
#endif
    swapcontext(&f.context, &main_);
#if SPINDLE_MODEL_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  }

  int current() const { return current_; }
  std::vector<Fiber>& fibers() { return fibers_; }

  static Run* active;

 private:
  static void Entry() {
    Run* r = active;
#if SPINDLE_MODEL_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &r->main_bottom_, &r->main_size_);
#endif
    Fiber& f = r->fibers_[r->current_];
    while (true) {
      (*f.body)();
      r->Park(Pending{}, /*ending=*/true);
    }
  }

  std::vector<Fiber> fibers_;
  ucontext_t main_;
  int current_ = -1;
#if SPINDLE_MODEL_ASAN
  const void* main_bottom_ = nullptr;
  size_t main_size_ = 0;
#endif
#if SPINDLE_MODEL_TSAN
  void* main_tsan_ = nullptr;
#endif
};

Run* Run::active = nullptr;
int next_location = 0;

std::string Describe(const std::vector<Node>& path) {
  std::string s = "schedule (thread@location r/w):";
  for (const Node& n : path) {
    const Pending& p = n.pending[n.chosen];
    s += " " + std::to_string(n.chosen) + "@" + std::to_string(p.location) +
         (p.write ? "w" : "r");
  }
  return s;
}

}  // namespace

int ModelExplorer::NewLocation() { return next_location++; }

void ModelExplorer::Access(int location, bool write) {
  Run* r = Run::active;
  if (r == nullptr || r->current() < 0) return;
  r->Park(Pending{location, write}, /*ending=*/false);
}

ModelResult ModelExplorer::Explore(const std::function<ModelProgram()>& make,
                                   const ModelOptions& options) {
  ModelResult result;
  std::vector<Node> path;
  std::unique_ptr<Run> run;
  while (true) {
    next_location = 0;
    ModelProgram program = make();
    const size_t n = program.threads.size();
    if (n == 0 || n > kMaxThreads) {
      result.failure = "ModelProgram needs 1 to 32 threads";
      return result;
    }
    if (!run || run->fibers().size() != n) run = std::make_unique<Run>(n);
    Run::active = run.get();
    for (size_t i = 0; i < n; ++i)
      run->Start(static_cast<int>(i), &program.threads[i]);

    size_t depth = 0;
    uint32_t next_sleep = 0;
    bool blocked = false;
    int steps = 0;
    while (true) {
      uint32_t enabled = 0;
      for (size_t i = 0; i < n; ++i) {
        if (run->fibers()[i].live) enabled |= 1u << i;
      }
      if (enabled == 0) break;
      if (++steps > options.max_steps) {
        result.failure =
            "execution exceeded max_steps (livelock?); " + Describe(path);
        Run::active = nullptr;
        return result;  // fibers are abandoned: a failing test anyway
      }
      int p;
      if (blocked) {
        p = Lowest(enabled);
      } else if (depth < path.size()) {
        p = path[depth].chosen;  // replay
      } else {
        Node node;
        node.enabled = enabled;
        node.sleep = options.sleep_sets ? next_sleep & enabled : 0;
        node.pending.resize(n);
        for (size_t i = 0; i < n; ++i) {
          node.pending[i] = run->fibers()[i].pending;
        }
        const uint32_t avail = enabled & ~node.sleep;
        if (avail == 0) {
          blocked = true;  // every live thread asleep: redundant
          ++result.sleep_blocked;
          continue;
        }
        node.chosen = Lowest(avail);
        path.push_back(std::move(node));
        p = path.back().chosen;
      }
      if (!blocked) {
        const Node& node = path[depth];
        next_sleep = 0;
        const uint32_t candidates = (node.sleep | node.done) & ~(1u << p);
        for (size_t q = 0; q < n; ++q) {
          if ((candidates >> q & 1u) &&
              Independent(node.pending[q], node.pending[p])) {
            next_sleep |= 1u << q;
          }
        }
        ++depth;
      }
      ++result.steps;
      run->SwitchTo(p);
    }
    Run::active = nullptr;

    if (!blocked) {
      ++result.executions;
      if (program.verify) {
        std::string why = program.verify();
        if (!why.empty()) {
          result.failure = why + "; " + Describe(path);
          return result;
        }
      }
      if (program.outcome) result.outcomes.insert(program.outcome());
    }
    if (result.executions >= options.max_executions) return result;

    // Backtrack.  A blocked execution's path ends at its last real choice.
    while (!path.empty()) {
      Node& node = path.back();
      node.done |= 1u << node.chosen;
      const uint32_t avail = node.enabled & ~(node.sleep | node.done);
      if (avail != 0) {
        node.chosen = Lowest(avail);
        break;
      }
      path.pop_back();
    }
    if (path.empty()) {
      result.complete = true;
      return result;
    }
  }
}

}  // namespace spindle::steal_testing
