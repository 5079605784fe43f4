// dispatch/slurm_options.cc: SlurmOptions::Validate and FromEnv.
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dispatch/slurm.h"

namespace spindle::dispatch {
namespace {

// Reads the integer variable `name` into `out` when set; InvalidArgument
// naming it and [lo, hi] otherwise.
absl::Status ReadInt(const char* name, int64_t lo, int64_t hi, int64_t& out) {
  const char* v = std::getenv(name);
  if (v == nullptr) return absl::OkStatus();
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < lo || n > hi) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s='%s'; valid: an integer in [%d, %d]", name, v, lo, hi));
  }
  out = n;
  return absl::OkStatus();
}

}  // namespace

absl::Status SlurmOptions::Validate() const {
  if (nodes < 1 || nodes > 100000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SlurmOptions::nodes is %d; valid range [1, 100000]", nodes));
  }
  if (cpus_per_node < 1 || cpus_per_node > 4096) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SlurmOptions::cpus_per_node is %d; valid range [1, 4096]",
        cpus_per_node));
  }
  if (time_limit < absl::Minutes(1) || time_limit > absl::Hours(24 * 365)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SlurmOptions::time_limit is %s; valid range [1m, 365 days]",
        absl::FormatDuration(time_limit)));
  }
  if (allocation_wait < absl::Seconds(1) ||
      allocation_wait > absl::Hours(24)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SlurmOptions::allocation_wait is %s; valid range [1s, 24h]",
        absl::FormatDuration(allocation_wait)));
  }
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"partition", &partition},
        {"account", &account}}) {
    if (value->find_first_of(" \t\n,=") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "SlurmOptions::%s is '%s'; valid: a name without spaces, ',' or "
          "'='",
          field, *value));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SlurmOptions> SlurmOptions::FromEnv() {
  SlurmOptions o;
  int64_t nodes = o.nodes, cpus = o.cpus_per_node;
  int64_t minutes = absl::ToInt64Minutes(o.time_limit);
  int64_t wait_s = absl::ToInt64Seconds(o.allocation_wait);
  for (absl::Status s :
       {ReadInt("SPINDLE_SLURM_NODES", 1, 100000, nodes),
        ReadInt("SPINDLE_SLURM_CPUS_PER_NODE", 1, 4096, cpus),
        ReadInt("SPINDLE_SLURM_TIME_LIMIT", 1, 60 * 24 * 365, minutes),
        ReadInt("SPINDLE_SLURM_WAIT", 1, 24 * 3600, wait_s)}) {
    if (!s.ok()) return s;
  }
  o.nodes = static_cast<int>(nodes);
  o.cpus_per_node = static_cast<int>(cpus);
  o.time_limit = absl::Minutes(minutes);
  o.allocation_wait = absl::Seconds(wait_s);
  if (const char* v = std::getenv("SPINDLE_SLURM_PARTITION")) o.partition = v;
  if (const char* v = std::getenv("SPINDLE_SLURM_ACCOUNT")) o.account = v;
  if (const char* v = std::getenv("SPINDLE_SLURM_CONF")) o.conf = v;
  if (absl::Status s = o.Validate(); !s.ok()) return s;
  return o;
}

std::string SlurmOptions::LocalClusterConf() {
  const char* dir = std::getenv("SPINDLE_SLURM_DIR");
  std::string conf = absl::StrCat(
      dir != nullptr && *dir != 0 ? dir : "/tmp/spindle-slurm", "/slurm.conf");
  return ::access(conf.c_str(), R_OK) == 0 ? conf : std::string();
}

}  // namespace spindle::dispatch
