// dispatch/process_spec.cc: ProcessSpec::Validate.
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "dispatch/process.h"

namespace spindle::dispatch {

// ---- ProcessSpec ------------------------------------------------------------

absl::Status ProcessSpec::Validate() const {
  if (binary.empty()) {
    return absl::InvalidArgumentError(
        "ProcessSpec::binary is empty; give a path or a name to look up in "
        "PATH");
  }
  for (const std::string* s : {&binary, &working_dir}) {
    if (s->find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ProcessSpec: '%s' contains a NUL byte", absl::CHexEscape(*s)));
    }
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ProcessSpec::timeout is %s; valid range: > 0 (InfiniteDuration for "
        "none)",
        absl::FormatDuration(timeout)));
  }
  for (const auto& [name, d] :
       {std::pair<const char*, absl::Duration>{"kill_grace", kill_grace},
        {"drain_bound", drain_bound}}) {
    if (d < absl::ZeroDuration() || d > absl::Hours(1)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("ProcessSpec::%s is %s; valid range [0, 1h]", name,
                          absl::FormatDuration(d)));
    }
  }
  if (output_cap > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ProcessSpec::output_cap is %d bytes; valid range [0, %d] (1 GiB)",
        output_cap, size_t{1} << 30));
  }
  for (const auto& [k, v] : env) {
    if (k.empty() || k.find('=') != std::string::npos ||
        k.find('\0') != std::string::npos || v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ProcessSpec::env has the name '%s'; a name is non-empty and has "
          "no '=' or NUL",
          absl::CHexEscape(k)));
    }
  }
  if (cpus < 1 || cpus > 4096) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ProcessSpec::cpus is %d; valid range [1, 4096]", cpus));
  }
  return absl::OkStatus();
}

}  // namespace spindle::dispatch
