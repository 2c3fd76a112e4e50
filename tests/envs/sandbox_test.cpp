// The sandbox runs real programs under real isolation; each escape test checks both the
// program's view (refused) and the host's (unaffected).
#include "envs/sandbox.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tidal::envs {
namespace {

// CTest runs tests in parallel processes: each gets its own sandbox uid (the process limit and
// the leftover-process check count a uid machine-wide).
int TestSlot() { return 1000 + ::getpid() % 100000; }

SandboxResult RunCode(const std::string& language, const std::string& code, double timeout_s = 5,
                  const std::string& stdin_data = "", int64_t memory_mb = 256,
                  SandboxLimits limits = {}) {
  SandboxRequest req{language, code, stdin_data, timeout_s, memory_mb};
  auto r = RunSandboxed(req, limits, TestSlot());
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : SandboxResult{};
}

// Processes on this machine owned by `uid`.
int ProcessesOf(uid_t uid) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream status(e.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("Uid:", 0) == 0) {
        n += std::stoul(line.substr(4)) == uid;
        break;
      }
    }
  }
  return n;
}

TEST(SandboxTest, RunsPythonAndBashWithStdin) {
  auto py = RunCode("python3", "import sys\nprint('hi', sys.stdin.read().upper())\nsys.exit(3)", 5,
                "abc");
  EXPECT_EQ(py.stdout_text, "hi ABC\n");
  EXPECT_EQ(py.exit_code, 3);
  EXPECT_EQ(py.error, "");
  EXPECT_FALSE(py.timed_out);
  auto sh = RunCode("bash", "echo out; echo err >&2; pwd; id -u; exit 0");
  EXPECT_EQ(sh.exit_code, 0);
  EXPECT_EQ(sh.stderr_text, "err\n");
  const SandboxLimits lim;
  EXPECT_EQ(sh.stdout_text, "out\n/work\n" + std::to_string(lim.base_uid + TestSlot()) + "\n");
}

TEST(SandboxTest, RejectsBadRequests) {
  SandboxLimits lim;
  EXPECT_TRUE(absl::IsInvalidArgument(RunSandboxed({"ruby", "1"}, lim, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      RunSandboxed({"bash", "true", "", lim.max_timeout_s + 1}, lim, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      RunSandboxed({"bash", "true", "", 1, lim.max_memory_mb + 1}, lim, 0).status()));
  auto req = SandboxRequestFromJson({{"language", "bash"}, {"cod", "x"}});
  ASSERT_FALSE(req.ok());
  EXPECT_NE(std::string(req.status().message()).find("cod: unknown field"), std::string::npos);
}

// The seccomp filter: no new namespaces (a nested user namespace would give the program a root
// of its own), no ptrace, no keyrings, no bpf, no mounts; ordinary processes and threads still
// work. Each refusal is EPERM (errno 1), seen by the program.
TEST(SandboxTest, SeccompRefusesNamespacesPtraceAndKernelInterfaces) {
  auto r = RunCode("python3",
                   "import ctypes, os, threading\n"
                   "libc = ctypes.CDLL(None, use_errno=True)\n"
                   "def call(name, *args):\n"
                   "    rc = getattr(libc, name)(*args)\n"
                   "    print(name, args[0] if args else '', rc, ctypes.get_errno())\n"
                   "call('unshare', 0x10000000)\n"   // CLONE_NEWUSER
                   "call('unshare', 0x00020000)\n"   // CLONE_NEWNS
                   "call('syscall', 56, 0x10000000 | 17, 0, 0, 0, 0)\n"  // clone(NEWUSER|SIGCHLD)
                   "call('syscall', 101, 0, 0, 0, 0)\n"                  // ptrace(TRACEME)
                   "call('syscall', 321, 0, 0, 0)\n"                     // bpf
                   "call('syscall', 250, 0, 0, 0, 0)\n"                  // keyctl
                   "call('mount', b'none', b'/tmp', b'tmpfs', 0, None)\n"
                   "pid = os.fork()\n"
                   "if pid == 0:\n"
                   "    os._exit(7)\n"
                   "print('child', os.WEXITSTATUS(os.waitpid(pid, 0)[1]))\n"
                   "t = threading.Thread(target=print, args=('thread ok',)); t.start(); t.join()\n");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  for (const char* line : {"unshare 268435456 -1 1\n", "unshare 131072 -1 1\n", "syscall 56 -1 1\n",
                           "syscall 101 -1 1\n", "syscall 321 -1 1\n", "syscall 250 -1 1\n",
                           "mount b'none' -1 1\n", "child 7\n", "thread ok\n"}) {
    EXPECT_NE(r.stdout_text.find(line), std::string::npos) << "missing: " << line << "\n" << r.stdout_text;
  }
  auto sh = RunCode("bash", "unshare -Ur true; echo rc=$?");
  EXPECT_NE(sh.stdout_text.find("rc=1"), std::string::npos) << sh.stdout_text << sh.stderr_text;
}

TEST(SandboxTest, NoNetworkNotEvenHostLoopback) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  auto r = RunCode("python3",
               "import socket\n"
               "s = socket.socket()\n"
               "s.settimeout(2)\n"
               "try:\n"
               "    s.connect(('127.0.0.1', " + std::to_string(port) + "))\n"
               "    print('CONNECTED')\n"
               "except OSError as e:\n"
               "    print('refused', e.errno)\n"
               "try:\n"
               "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
               "    print('INTERNET')\n"
               "except OSError as e:\n"
               "    print('refused', e.errno)\n");
  EXPECT_EQ(r.stdout_text.find("CONNECTED"), std::string::npos) << r.stdout_text;
  EXPECT_EQ(r.stdout_text.find("INTERNET"), std::string::npos) << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("refused"), std::string::npos) << r.stdout_text << r.stderr_text;
  // The host's listener never saw a connection.
  ::fcntl(listener, F_SETFL, O_NONBLOCK);
  EXPECT_LT(::accept(listener, nullptr, nullptr), 0);
  ::close(listener);
}

TEST(SandboxTest, CannotWriteOutsideItsWorkdirAndEachCallIsFresh) {
  const std::string marker = "tidal_sandbox_escape_" + std::to_string(::getpid());
  auto r = RunCode("python3",
               "import os\n"
               "for p in ['/" + marker + "', '/usr/" + marker + "', '/etc/" + marker + "',\n"
               "          '/work/../" + marker + "', '/proc/" + marker + "']:\n"
               "    try:\n"
               "        open(p, 'w').write('x')\n"
               "        print('WROTE', p)\n"
               "    except OSError as e:\n"
               "        print('denied', p, e.errno)\n"
               "open('/tmp/" + marker + "', 'w').write('private tmp')\n"
               "open('/work/left_behind', 'w').write('x')\n"
               "print(sorted(os.listdir('/')))\n");
  EXPECT_EQ(r.stdout_text.find("WROTE"), std::string::npos) << r.stdout_text;
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  // Nothing of the host's file system but the system directories is visible.
  EXPECT_EQ(r.stdout_text.find("'root'"), std::string::npos) << r.stdout_text;
  EXPECT_EQ(r.stdout_text.find("'home'"), std::string::npos) << r.stdout_text;
  // The host: none of the files exist, not even the one in the sandbox's /tmp.
  for (const std::string& p : {"/" + marker, "/usr/" + marker, "/etc/" + marker, "/tmp/" + marker}) {
    EXPECT_FALSE(std::filesystem::exists(p)) << p;
  }
  // The next call starts in an empty working directory.
  auto again = RunCode("bash", "ls -A /work; ls -A /tmp");
  EXPECT_EQ(again.stdout_text, "main.sh\n");
}

TEST(SandboxTest, ForkBombIsContainedAndCleanedUp) {
  const SandboxLimits lim;
  auto r = RunCode("bash", ":(){ :|:& };:\nsleep 10", 2);
  EXPECT_TRUE(r.timed_out || r.exit_code != 0) << r.ToJson().dump();
  EXPECT_LT(r.time_s, 4.0);
  // Every process of the sandbox uid is gone; the host can still fork.
  EXPECT_EQ(ProcessesOf(lim.base_uid + TestSlot()), 0);
  auto after = RunCode("bash", "echo alive");
  EXPECT_EQ(after.stdout_text, "alive\n");
}

TEST(SandboxTest, InfiniteLoopHitsTheWallClock) {
  auto r = RunCode("python3", "while True:\n    pass\n", 1);
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.error.find("time limit"), std::string::npos) << r.error;
  EXPECT_LT(r.time_s, 2.5);
  // A sleeping program uses no CPU: only the wall clock stops it.
  auto s = RunCode("bash", "sleep 30", 1);
  EXPECT_TRUE(s.timed_out);
}

TEST(SandboxTest, HugeOutputIsCapped) {
  SandboxLimits lim;
  lim.max_output_bytes = 1000;
  auto r = RunCode("python3", "import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 10000)\n",
               10, "", 256, lim);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.stdout_text.size(), 1000u);
  EXPECT_EQ(r.exit_code, 0);
}

TEST(SandboxTest, MemoryAndFileSizeLimits) {
  auto mem = RunCode("python3", "x = bytearray(512 * 1024 * 1024)\nprint('ALLOCATED')", 5, "", 128);
  EXPECT_EQ(mem.stdout_text.find("ALLOCATED"), std::string::npos);
  EXPECT_NE(mem.stderr_text.find("MemoryError"), std::string::npos) << mem.stderr_text;
  SandboxLimits lim;
  lim.file_size_mb = 1;
  auto big = RunCode("bash", "head -c 5000000 /dev/zero > /work/big; echo rc=$?; stat -c %s /work/big",
                 5, "", 256, lim);
  EXPECT_NE(big.stdout_text.find("1048576"), std::string::npos) << big.ToJson().dump();
}

}  // namespace
}  // namespace tidal::envs
