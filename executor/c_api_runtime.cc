// executor/c_api_runtime.cc: runtimes in the C interface
// (executor/spindle.h): create from attributes, spawn from any thread,
// stats, destroy.

#include <cstring>

#include "executor/internal/c_api_impl.h"

using spindle::c_api_internal::CheckSize;
using spindle::c_api_internal::ConfigureCommon;
using spindle::c_api_internal::Fail;
using spindle::c_api_internal::Guard;
using spindle::c_api_internal::SpawnWith;

extern "C" {

void spindle_runtime_attr_init(spindle_runtime_attr_t* attr) {
  if (attr == nullptr) return;
  std::memset(attr, 0, sizeof(*attr));
  attr->size = sizeof(*attr);
  attr->reactor = SPINDLE_REACTOR_AUTO;
}

int spindle_runtime_create(const spindle_runtime_attr_t* attr,
                           spindle_runtime_t** out) {
  return Guard("spindle_runtime_create", [&]() -> int {
    const char* call = "spindle_runtime_create";
    if (out == nullptr) return Fail(EINVAL, "spindle_runtime_create: out is NULL");
    *out = nullptr;
    spindle_runtime_attr_t a;
    spindle_runtime_attr_init(&a);
    if (attr != nullptr) {
      if (int r = CheckSize(call, attr, attr->size, sizeof(a), sizeof(a));
          r != 0) {
        return r;
      }
      a = *attr;
    }
    if (a.workers > 1024) {
      return Fail(EINVAL, absl::StrCat(call, ": workers ", a.workers,
                                       " out of range: valid is 0 (one per "
                                       "CPU) or 1..1024"));
    }
    spindle::RuntimeBuilder b;
    auto rt = std::make_unique<spindle_runtime>();
    if (a.workers != 0) b.Workers(a.workers);
    if (int r = ConfigureCommon(call, a, b, &rt->queues); r != 0) return r;
    absl::StatusOr<std::unique_ptr<spindle::Runtime>> built = b.Build();
    if (!built.ok()) {
      return Fail(EINVAL, absl::StrCat(call, ": ", built.status().message()));
    }
    rt->rt = std::move(*built);
    rt->info->workers = rt->rt->worker_count();
    *out = rt.release();
    return 0;
  });
}

int spindle_runtime_destroy(spindle_runtime_t* rt) {
  return Guard("spindle_runtime_destroy", [&]() -> int {
    if (rt == nullptr) return Fail(EINVAL, "spindle_runtime_destroy: rt is NULL");
    if (spindle::Runtime::Current() == rt->rt.get()) {
      return Fail(EBUSY, "spindle_runtime_destroy: called from one of the "
                         "runtime's own tasks (its worker would wait for "
                         "itself)");
    }
    delete rt;
    return 0;
  });
}

int spindle_runtime_workers(const spindle_runtime_t* rt) {
  return Guard("spindle_runtime_workers", [&]() -> int {
    if (rt == nullptr) return Fail(EINVAL, "spindle_runtime_workers: rt is NULL");
    return static_cast<int>(rt->rt->worker_count());
  });
}

int spindle_runtime_stats(const spindle_runtime_t* rt, spindle_stats_t* out) {
  return Guard("spindle_runtime_stats", [&]() -> int {
    const char* call = "spindle_runtime_stats";
    if (rt == nullptr || out == nullptr) {
      return Fail(EINVAL, "spindle_runtime_stats: rt or out is NULL");
    }
    if (out->size < sizeof(spindle_stats_t)) {
      return Fail(EINVAL, absl::StrCat(call, ": out->size ", out->size,
                                       " is smaller than ",
                                       sizeof(spindle_stats_t)));
    }
    if (spindle::Runtime::Current() != nullptr) {
      return Fail(EBUSY, absl::StrCat(call, ": called from a runtime's "
                                            "worker (the workers' counters "
                                            "are read by tasks on them)"));
    }
    const spindle::RuntimeStats s = rt->rt->Stats();
    const size_t size = out->size;
    std::memset(out, 0, size);  // fields of a newer version: zero
    out->size = size;
    for (const spindle::ExecutorStats& w : s.workers) {
      out->polls += w.polls;
      out->spawns += w.spawns;
      out->completions += w.completions;
      out->cancellations += w.cancellations;
      out->live_tasks += w.live_tasks;
    }
    return 0;
  });
}

int spindle_runtime_spawn(spindle_runtime_t* rt, spindle_task_fn fn,
                          void* arg, const spindle_task_attr_t* attr,
                          spindle_task_t** out) {
  return Guard("spindle_runtime_spawn", [&]() -> int {
    if (rt == nullptr) return Fail(EINVAL, "spindle_runtime_spawn: rt is NULL");
    return SpawnWith("spindle_runtime_spawn", rt->queues, rt->info, fn, arg,
                     attr, out, *rt->rt);
  });
}

}  // extern "C"
