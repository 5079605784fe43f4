// executor/internal/cpu_relax.h: the pause of a spin-wait.

#ifndef SPINDLE_EXECUTOR_INTERNAL_CPU_RELAX_H_
#define SPINDLE_EXECUTOR_INTERNAL_CPU_RELAX_H_

namespace spindle::executor_internal {

// One spin-wait pause: lets the sibling hyperthread run and saves power;
// nothing on other architectures.
inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_CPU_RELAX_H_
