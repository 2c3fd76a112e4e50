// The Slurm launcher's srun command and environment (through a stand-in `srun` script that
// records what it was given), the sbatch script, and the external launcher's death reports.
// The real cluster test is tests/tools/slurm_e2e_test.cpp.
#include "scheduler/slurm.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "core/recipe.h"
#include "tests/core/temp_dir.h"

namespace tidal::scheduler {
namespace {

std::string Slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SlurmLauncherTest, StartsOneStepPerWorkerWithTheTokenOnlyInTheEnvironment) {
  testing_util::TempDir dir;
  const std::string fake = dir.path() + "/srun";
  {
    std::ofstream s(fake);
    s << "#!/bin/sh\necho \"$@\" > \"$TIDAL_TEST_OUT.args\"\n"
         "echo \"$TIDAL_WORKER_TOKEN|$TIDAL_CREDENTIALS|$OMP_NUM_THREADS\" > \"$TIDAL_TEST_OUT.env\"\nexit 3\n";
  }
  ::chmod(fake.c_str(), 0755);
  const std::string out = dir.path() + "/rec";
  ::setenv("TIDAL_TEST_OUT", out.c_str(), 1);
  SlurmOptions so;
  so.srun = fake;
  so.cpus_per_worker = 2;
  so.srun_args = {"--mem=1G"};
  so.pin_node = "n7";
  so.pinned_devices = {0};
  SlurmLauncher launcher({"/opt/tidal", "tcp://10.0.0.1:5555", dir.path(), "/run/secrets/worker.json", {"--x", "1"}},
                         so);
  absl::StatusOr<pid_t> pid = launcher.Spawn(0, DeviceSlot{DeviceKind::kCpu, 0}, "t1.0.secret");
  ASSERT_TRUE(pid.ok()) << pid.status();
  std::vector<ExitedWorker> exited;
  for (int i = 0; i < 200 && exited.empty(); ++i) {
    exited = launcher.Reap();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(exited.size(), 1u);
  EXPECT_EQ(exited[0].Describe(), "exited with code 3");  // a step's end reads like a worker death
  const std::string args = Slurp(out + ".args");
  EXPECT_NE(args.find("--nodes=1 --ntasks=1 --exact --quit-on-interrupt"), std::string::npos) << args;
  EXPECT_NE(args.find("--job-name=tidal-worker-0"), std::string::npos) << args;
  EXPECT_NE(args.find("--cpus-per-task=2"), std::string::npos) << args;
  EXPECT_NE(args.find("--nodelist=n7"), std::string::npos) << args;  // the train rank is pinned
  EXPECT_NE(args.find("--mem=1G /opt/tidal worker --controller tcp://10.0.0.1:5555 --device cpu:0 --rank 0 --x 1"),
            std::string::npos)
      << args;
  EXPECT_EQ(args.find("t1.0.secret"), std::string::npos) << "the token must not be on a command line: " << args;
  EXPECT_EQ(Slurp(out + ".env"), "t1.0.secret|/run/secrets/worker.json|1\n");

  // A rollout worker (not pinned) on a GPU slot asks Slurm for one GPU.
  ASSERT_TRUE(launcher.Spawn(1, DeviceSlot{DeviceKind::kCuda, 1}, "t1.1.x").ok());
  exited.clear();
  for (int i = 0; i < 200 && exited.empty(); ++i) {
    exited = launcher.Reap();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string args1 = Slurp(out + ".args");
  EXPECT_NE(args1.find("--gpus-per-task=1"), std::string::npos) << args1;
  EXPECT_EQ(args1.find("--nodelist"), std::string::npos) << args1;
  ::unsetenv("TIDAL_TEST_OUT");
}

TEST(SlurmLauncherTest, SbatchScriptAsksForTheWholePool) {
  testing_util::TempDir dir;
  absl::StatusOr<Recipe> r = LoadRecipeFromString(R"(
name: big
model: {tokenizer: byte}
pool: {devices: "cuda:0-7", tags: {rollout: 6, train: 2}}
env: {plugin: "builtin:letter_count"}
train: {steps: 10}
slurm: {nodes: 2, partition: gpu, time: "02:00:00", sbatch_args: "--account=rl --qos=high"}
)",
                                                  "big.yaml", {"run_dir=" + dir.path() + "/run"});
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<std::string> script = WriteSbatchScript(*r, "/opt/tidal bin/tidal");
  ASSERT_TRUE(script.ok()) << script.status();
  const std::string s = Slurp(*script);
  for (const char* want : {"#SBATCH --ntasks=9\n", "#SBATCH --gpus=8\n", "#SBATCH --nodes=2\n",
                           "#SBATCH --partition=gpu\n", "#SBATCH --time=02:00:00\n", "#SBATCH --account=rl\n",
                           "#SBATCH --qos=high\n", "exec '/opt/tidal bin/tidal' run --quiet '"}) {
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
  }
  // The recipe it runs is the resolved one, and loads back.
  absl::StatusOr<Recipe> back = LoadRecipe(dir.path() + "/run/slurm/recipe.yaml");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->pool.devices, "cuda:0-7");
}

TEST(ExternalLauncherTest, AKilledWorkerIsReportedOnceByReap) {
  ExternalLauncher l;
  ASSERT_TRUE(l.Spawn(2, DeviceSlot{DeviceKind::kCuda, 2}, "").ok());
  EXPECT_EQ(l.Pid(2), 0);  // expected, not started by us
  EXPECT_TRUE(l.Reap().empty());
  l.Kill(2, SIGKILL);
  std::vector<ExitedWorker> e = l.Reap();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].device, 2);
  EXPECT_EQ(e[0].Describe(), "killed by signal 9 (Killed)");
  EXPECT_TRUE(l.Reap().empty());
  EXPECT_EQ(l.Pid(2), -1);
}

}  // namespace
}  // namespace tidal::scheduler
