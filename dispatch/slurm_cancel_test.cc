// How SlurmLauncher cancels steps, against a scripted Slurm (shell scripts
// in SlurmOptions::commands_dir) that plays races a real cluster shows only
// now and then.  No cluster needed.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dispatch/process.h"
#include "dispatch/slurm.h"
#include "gtest/gtest.h"

namespace spindle::dispatch {
namespace {

// The scripts keep their state next to the slurm.conf they are given.
constexpr char kPrelude[] = R"sh(#!/bin/sh
D=$(dirname "$SLURM_CONF")
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
)sh";

// srun: records its step's name, then waits until the launcher has looked
// for the step once (not listed yet) and exits 0, as srun does when it is
// interrupted while creating its step.  Slurm lists the step only
// `appear_ms` after srun ended, and until it is cancelled: slurmctld went
// on creating it.  scancel fails `scancel_failures` times first.
void WriteFakeSlurm(const std::string& dir, int appear_ms,
                    int scancel_failures) {
  auto write = [&](const char* name, const std::string& body) {
    const std::string path = absl::StrCat(dir, "/", name);
    std::ofstream(path) << kPrelude << body;
    ASSERT_EQ(::chmod(path.c_str(), 0755), 0) << path;
  };
  write("salloc", "echo 'salloc: Granted job allocation 7' >&2\n");
  write("scontrol", "echo f1\n");
  write("srun", R"sh(for a in "$@"; do
  case "$a" in --job-name=*) echo "${a#--job-name=}" > "$D/name" ;; esac
done
while [ ! -e "$D/looked" ]; do sleep 0.01; done
now_ms > "$D/srun_ended"
exit 0
)sh");
  write("squeue", absl::StrCat(R"sh(case "$*" in *%N*) echo f1; exit 0 ;; esac
touch "$D/looked"
[ -e "$D/srun_ended" ] || exit 0
[ -e "$D/cancelled" ] && exit 0
[ $(( $(now_ms) - $(cat "$D/srun_ended") )) -ge )sh",
                               appear_ms, R"sh( ] || exit 0
echo "7.0 $(cat "$D/name")"
)sh"));
  write("scancel", absl::StrCat(R"sh(echo "$*" >> "$D/scancels"
n=$(wc -l < "$D/scancels")
[ "$n" -le )sh",
                                scancel_failures, R"sh( ] && exit 1
case "$*" in *7.0*) touch "$D/cancelled" ;; esac
exit 0
)sh"));
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string NewDir(const char* name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

// Kills the step as soon as srun starts; returns the scancel lines once
// the step is cancelled, or after 30 s.
std::string KillAndWatch(const std::string& dir) {
  SlurmOptions o;
  o.commands_dir = dir;
  o.conf = dir + "/slurm.conf";
  auto slurm = SlurmLauncher::Create(o);
  EXPECT_TRUE(slurm.ok()) << slurm.status();
  if (!slurm.ok()) return "";
  auto runner =
      ProcessRunner::Create({.backend = "auto", .launcher = *slurm}).value();
  ProcessSpec s;
  s.binary = "/bin/true";
  absl::StatusOr<ProcessHandle> h = runner->Start(s);
  EXPECT_TRUE(h.ok()) << h.status();
  if (!h.ok()) return "";
  h->Kill();
  const ProcessResult* r = h->WaitFor(absl::Seconds(30));
  EXPECT_NE(r, nullptr) << "srun outlived its kill";
  if (r != nullptr) {
    EXPECT_TRUE(r->killed);
  }
  // Bounded: the launcher looks every 100 ms; 30 s means never.
  const absl::Time end = absl::Now() + absl::Seconds(30);
  while (::access((dir + "/cancelled").c_str(), F_OK) != 0 &&
         absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  return Read(dir + "/scancels");
}

// Regression: the launcher stopped looking once srun had ended, so a step
// that slurmctld listed only after that ran on, uncancelled.
TEST(SlurmCancelTest, AStepListedOnlyAfterSrunEndedIsStillCancelled) {
  const std::string dir = NewDir("late");
  WriteFakeSlurm(dir, /*appear_ms=*/1000, /*scancel_failures=*/0);
  const std::string scancels = KillAndWatch(dir);
  EXPECT_EQ(::access((dir + "/cancelled").c_str(), F_OK), 0)
      << "the step was never cancelled; scancel calls: " << scancels;
  EXPECT_NE(scancels.find("7.0"), std::string::npos) << scancels;
}

// A scancel that fails (slurmctld busy) is sent again while the step is
// still listed.
TEST(SlurmCancelTest, AFailedScancelIsRetriedWhileTheStepIsListed) {
  const std::string dir = NewDir("retry");
  WriteFakeSlurm(dir, /*appear_ms=*/0, /*scancel_failures=*/1);
  const std::string scancels = KillAndWatch(dir);
  EXPECT_EQ(::access((dir + "/cancelled").c_str(), F_OK), 0)
      << "the step was never cancelled; scancel calls: " << scancels;
  EXPECT_EQ(scancels, "7.0\n7.0\n");
}

}  // namespace
}  // namespace spindle::dispatch
