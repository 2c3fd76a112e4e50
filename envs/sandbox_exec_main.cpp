// tidal-sandbox-exec: runs one untrusted program for the sandbox service (envs/sandbox.h).
//
// Started by RunSandboxed with: fd 0/1/2 = the program's stdin/stdout/stderr, fd 3 = a pipe for
// this process's one-line JSON report, fd 4 = the program's source text (read to EOF first).
//   tidal-sandbox-exec --interpreter PATH --file NAME --uid N --cpu-s N --wall-s X --mem-mb N
//                      --procs N --fsize-mb N --disk-mb N [--ro PATH]...
// Layout of the isolation, from the outside in:
//   this process: unshare(mount, net, pid, ipc, uts) -> fork "init" (pid 1 of the new pid
//     namespace); enforces the wall-clock limit by SIGKILLing init, which makes the kernel kill
//     every process left in the namespace (fork bombs, daemons) at once.
//   init: builds a new root on a tmpfs: read-only binds of /usr /etc (+ --ro paths), the
//     /bin /lib /lib64 /sbin symlinks, /dev/{null,zero,random,urandom}, a fresh /proc, and two
//     size-capped tmpfs mounts, /work (the fresh working directory, holding the program) and
//     /tmp; pivot_root into it, detach the old root, make / read-only. Then forks the program
//     and reports how it ended.
//   program: rlimits (CPU, address space, processes of its uid, file size, open files, no
//     core), an unprivileged uid/gid of its own (all capabilities gone), no_new_privs, a seccomp
//     filter, a clean environment, exec.
// The seccomp filter (libseccomp) answers EPERM to the calls an unprivileged program needs only
// to attack the kernel or escape: new namespaces of any kind (user namespaces included, so no
// nested sandbox with its own root), setns, mount and pivot_root, ptrace and cross-process
// memory access, keyrings, bpf, perf events, userfaultfd, io_uring, module loading, kexec,
// reboot, swap, acct, quotas, open_by_handle_at, the tty injection ioctl (TIOCSTI), and
// personality changes other than the default. clone3 answers ENOSYS (its flags live in memory
// a filter cannot read), so the C library falls back to clone, whose flags are checked. Any
// other architecture's calls (x32, i386 on x86_64) kill the process. Without libseccomp at
// build time the helper refuses every run (fail closed).
// The new network namespace has only a down loopback: no network at all, host loopback
// included. Any setup step that fails aborts the run with {"setup_error": ...}: we fail
// closed, never run the code with less isolation than asked.
// Report (fd 3): {"exit_code": N} | {"signal": N} plus "timed_out", "time_s", or
// {"setup_error": "..."}.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#ifdef TIDAL_HAVE_SECCOMP
#include <seccomp.h>
#include <sys/ioctl.h>
#endif
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string interpreter, file;
  long uid = -1, cpu_s = 5, mem_mb = 256, procs = 32, fsize_mb = 16, disk_mb = 32;
  double wall_s = 5;
  std::vector<std::string> ro;
};

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void Report(const std::string& json) {
  std::string line = json + "\n";
  (void)!::write(3, line.data(), line.size());
}

[[noreturn]] void SetupFailed(const std::string& what) {
  Report("{\"setup_error\":\"" + JsonEscape(what) + "\"}");
  std::exit(0);
}

// In init: a failed step goes to the parent over `err_fd` ("E..."), then init exits.
int g_err_fd = -1;
[[noreturn]] void InitFail(const std::string& what) {
  std::string msg = "E" + what + ": " + std::strerror(errno) + "\n";
  (void)!::write(g_err_fd, msg.data(), msg.size());
  _exit(1);
}

void MkDir(const std::string& p, mode_t mode = 0755) {
  if (::mkdir(p.c_str(), mode) != 0 && errno != EEXIST) InitFail("mkdir " + p);
}

void MkDirs(const std::string& p) {
  for (size_t i = 1; i <= p.size(); ++i) {
    if (i == p.size() || p[i] == '/') MkDir(p.substr(0, i));
  }
}

void BindReadOnly(const std::string& src, const std::string& dst) {
  if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    InitFail("bind " + src);
  }
  if (::mount(nullptr, dst.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID,
              nullptr) != 0) {
    InitFail("remount read-only " + dst);
  }
}

void Tmpfs(const std::string& dst, const std::string& opts) {
  if (::mount("tmpfs", dst.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
    InitFail("tmpfs " + dst);
  }
}

void BuildRoot(const Options& o, const std::string& root, const std::string& code) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    InitFail("make mounts private");
  }
  Tmpfs(root, "size=1m,mode=755");
  for (const char* d : {"usr", "etc", "bin", "lib", "lib64", "lib32", "sbin"}) {
    const std::string host = std::string("/") + d;
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {  // merged-/usr: /bin -> usr/bin
      char target[4096];
      ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
      if (n < 0) InitFail("readlink " + host);
      target[n] = 0;
      if (::symlink(target, (root + host).c_str()) != 0) InitFail("symlink " + host);
    } else if (S_ISDIR(st.st_mode)) {
      MkDir(root + host);
      BindReadOnly(host, root + host);
    }
  }
  for (const auto& p : o.ro) {
    MkDirs(root + p);
    BindReadOnly(p, root + p);
  }
  MkDir(root + "/dev");
  for (const char* dev : {"null", "zero", "random", "urandom"}) {
    const std::string dst = root + "/dev/" + dev;
    int fd = ::open(dst.c_str(), O_CREAT | O_WRONLY, 0666);
    if (fd < 0) InitFail("create " + dst);
    ::close(fd);
    const std::string src = std::string("/dev/") + dev;
    if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) InitFail("bind " + src);
  }
  MkDir(root + "/proc");
  if (::mount("proc", (root + "/proc").c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) != 0) {
    InitFail("mount /proc");
  }
  const std::string ids = ",uid=" + std::to_string(o.uid) + ",gid=" + std::to_string(o.uid);
  const std::string size = "size=" + std::to_string(o.disk_mb) + "m";
  MkDir(root + "/work");
  Tmpfs(root + "/work", size + ",mode=700" + ids);
  MkDir(root + "/tmp");
  Tmpfs(root + "/tmp", size + ",mode=1777");
  // The program, owned by its uid so it may rewrite it like any file of its own.
  const std::string prog = root + "/work/" + o.file;
  int fd = ::open(prog.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) InitFail("create " + prog);
  for (size_t off = 0; off < code.size();) {
    ssize_t w = ::write(fd, code.data() + off, code.size() - off);
    if (w <= 0) InitFail("write " + prog);
    off += static_cast<size_t>(w);
  }
  if (::fchown(fd, o.uid, o.uid) != 0) InitFail("chown " + prog);
  ::close(fd);

  MkDir(root + "/.old");
  if (::syscall(SYS_pivot_root, root.c_str(), (root + "/.old").c_str()) != 0) {
    InitFail("pivot_root");
  }
  if (::chdir("/") != 0) InitFail("chdir /");
  if (::umount2("/.old", MNT_DETACH) != 0) InitFail("detach the old root");
  ::rmdir("/.old");
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) !=
      0) {
    InitFail("remount / read-only");
  }
  ::sethostname("sandbox", 7);
}

#ifdef TIDAL_HAVE_SECCOMP
// The flags of clone/unshare that create a namespace.
constexpr uint64_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                                     CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | 0x00000080 /* CLONE_NEWTIME */;

void InstallSeccompFilter() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) InitFail("seccomp_init");
  auto deny = [&](int nr, const char* name, uint32_t action = SCMP_ACT_ERRNO(EPERM)) {
    if (nr < 0) return;  // not a call on this architecture
    if (seccomp_rule_add(ctx, action, nr, 0) != 0) InitFail(std::string("seccomp rule ") + name);
  };
#define TIDAL_DENY(call) deny(SCMP_SYS(call), #call)
  TIDAL_DENY(unshare);  // a sandboxed program has no use for any new namespace
  TIDAL_DENY(setns);
  TIDAL_DENY(mount);
  TIDAL_DENY(umount2);
  TIDAL_DENY(pivot_root);
  TIDAL_DENY(chroot);
  TIDAL_DENY(fsopen);
  TIDAL_DENY(fsmount);
  TIDAL_DENY(fsconfig);
  TIDAL_DENY(move_mount);
  TIDAL_DENY(open_tree);
  TIDAL_DENY(mount_setattr);
  TIDAL_DENY(ptrace);
  TIDAL_DENY(process_vm_readv);
  TIDAL_DENY(process_vm_writev);
  TIDAL_DENY(kcmp);
  TIDAL_DENY(pidfd_getfd);
  TIDAL_DENY(add_key);
  TIDAL_DENY(request_key);
  TIDAL_DENY(keyctl);
  TIDAL_DENY(bpf);
  TIDAL_DENY(perf_event_open);
  TIDAL_DENY(userfaultfd);
  TIDAL_DENY(io_uring_setup);
  TIDAL_DENY(io_uring_enter);
  TIDAL_DENY(io_uring_register);
  TIDAL_DENY(init_module);
  TIDAL_DENY(finit_module);
  TIDAL_DENY(delete_module);
  TIDAL_DENY(kexec_load);
  TIDAL_DENY(kexec_file_load);
  TIDAL_DENY(reboot);
  TIDAL_DENY(swapon);
  TIDAL_DENY(swapoff);
  TIDAL_DENY(acct);
  TIDAL_DENY(quotactl);
  TIDAL_DENY(open_by_handle_at);
  TIDAL_DENY(name_to_handle_at);
  TIDAL_DENY(syslog);
  TIDAL_DENY(vhangup);
  TIDAL_DENY(lookup_dcookie);
  TIDAL_DENY(nfsservctl);
  TIDAL_DENY(uselib);
  TIDAL_DENY(ustat);
  TIDAL_DENY(sysfs);
  TIDAL_DENY(_sysctl);
  TIDAL_DENY(settimeofday);
  TIDAL_DENY(clock_settime);
  TIDAL_DENY(clock_adjtime);
  TIDAL_DENY(adjtimex);
#undef TIDAL_DENY
  // clone3 keeps its flags in a struct in memory, out of a filter's reach: ENOSYS makes the C
  // library fall back to clone, whose flags register is checked here.
  deny(SCMP_SYS(clone3), "clone3", SCMP_ACT_ERRNO(ENOSYS));
  // clone without namespace flags is how threads and processes are made; with any, EPERM.
  // (libseccomp compares masked equality only, so one rule per flag.)
  for (uint64_t flag = 1; flag != 0; flag <<= 1) {
    if ((kNamespaceFlags & flag) == 0) continue;
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)) != 0) {
      InitFail("seccomp rule clone");
    }
  }
  // TIOCSTI pushes input into a terminal the program shares with someone else.
  if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)) != 0) {
    InitFail("seccomp rule ioctl");
  }
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0) {
    InitFail("seccomp bad-arch action");
  }
  const int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) {
    errno = -rc;
    InitFail("seccomp_load");
  }
}
#else
void InstallSeccompFilter() {
  errno = ENOSYS;
  InitFail("seccomp filter (tidal-sandbox-exec was built without libseccomp; refusing to run code without it)");
}
#endif

[[noreturn]] void ExecProgram(const Options& o) {
  auto limit = [](int res, rlim_t soft, rlim_t hard, const char* name) {
    rlimit rl{soft, hard};
    if (::setrlimit(res, &rl) != 0) InitFail(std::string("setrlimit ") + name);
  };
  if (::chdir("/work") != 0) InitFail("chdir /work");
  limit(RLIMIT_CPU, o.cpu_s, o.cpu_s + 1, "CPU");
  limit(RLIMIT_AS, static_cast<rlim_t>(o.mem_mb) << 20, static_cast<rlim_t>(o.mem_mb) << 20, "AS");
  limit(RLIMIT_NPROC, o.procs, o.procs, "NPROC");
  limit(RLIMIT_FSIZE, static_cast<rlim_t>(o.fsize_mb) << 20, static_cast<rlim_t>(o.fsize_mb) << 20,
        "FSIZE");
  limit(RLIMIT_NOFILE, 64, 64, "NOFILE");
  limit(RLIMIT_CORE, 0, 0, "CORE");
  if (::setgroups(0, nullptr) != 0) InitFail("setgroups");
  if (::setgid(o.uid) != 0) InitFail("setgid");
  if (::setuid(o.uid) != 0) InitFail("setuid");
  if (::setuid(0) == 0) InitFail("privileges could be regained");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) InitFail("no_new_privs");
  InstallSeccompFilter();
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != g_err_fd) ::close(fd);
  }
  std::vector<std::string> args = {o.interpreter, o.file};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/work",
                                  "TMPDIR=/tmp", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
                                  "PYTHONUNBUFFERED=1"};
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  ::execve(o.interpreter.c_str(), argv.data(), envp.data());
  InitFail("exec " + o.interpreter);
}

// pid 1 of the sandbox: set up, run the program, report its end over err_fd, exit (which
// kills whatever the program left behind).
[[noreturn]] void RunInit(const Options& o, const std::string& root, const std::string& code) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  BuildRoot(o, root, code);
  pid_t prog = ::fork();
  if (prog < 0) InitFail("fork");
  if (prog == 0) ExecProgram(o);
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(-1, &status, 0);  // also reaps orphans re-parented to us
    if (r == prog) break;
    if (r < 0 && errno != EINTR) InitFail("waitpid");
  }
  std::string msg = WIFSIGNALED(status) ? "S" + std::to_string(WTERMSIG(status))
                                        : "X" + std::to_string(WEXITSTATUS(status));
  (void)!::write(g_err_fd, msg.data(), msg.size());
  _exit(0);
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--interpreter") o->interpreter = v;
    else if (k == "--file") o->file = v;
    else if (k == "--uid") o->uid = std::atol(v.c_str());
    else if (k == "--cpu-s") o->cpu_s = std::atol(v.c_str());
    else if (k == "--wall-s") o->wall_s = std::atof(v.c_str());
    else if (k == "--mem-mb") o->mem_mb = std::atol(v.c_str());
    else if (k == "--procs") o->procs = std::atol(v.c_str());
    else if (k == "--fsize-mb") o->fsize_mb = std::atol(v.c_str());
    else if (k == "--disk-mb") o->disk_mb = std::atol(v.c_str());
    else if (k == "--ro") o->ro.push_back(v);
    else return false;
  }
  return !o->interpreter.empty() && !o->file.empty() && o->file.find('/') == std::string::npos &&
         o->uid > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr, "tidal-sandbox-exec: internal helper of `tidal sandbox serve`\n");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  std::string code;
  char buf[65536];
  for (ssize_t n; (n = ::read(4, buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) SetupFailed(std::string("reading the program: ") + std::strerror(errno));
    code.append(buf, static_cast<size_t>(n));
  }
  ::close(4);
  if (::access(o.interpreter.c_str(), X_OK) != 0) {
    SetupFailed("interpreter " + o.interpreter + " is not executable");
  }
  if (::unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
    SetupFailed(std::string("unshare(mount|net|pid|ipc|uts namespaces) failed: ") +
                std::strerror(errno) +
                "; refusing to run code without isolation (needs root or CAP_SYS_ADMIN)");
  }
  char root_tmpl[] = "/tmp/tidal-sandbox-XXXXXX";
  if (::mkdtemp(root_tmpl) == nullptr) SetupFailed("mkdtemp /tmp/tidal-sandbox-*");
  const std::string root = root_tmpl;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) SetupFailed("pipe");
  pid_t init = ::fork();
  if (init < 0) SetupFailed(std::string("fork: ") + std::strerror(errno));
  if (init == 0) {
    ::close(3);  // the report channel is ours; the program must not be able to forge it
    ::close(pipefd[0]);
    g_err_fd = pipefd[1];
    RunInit(o, root, code);
  }
  ::close(pipefd[1]);
  // Wall clock: poll for init's end; on the deadline kill it, and with it the namespace.
  bool timed_out = false;
  int status = 0;
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(o.wall_s));
  while (true) {
    pid_t r = ::waitpid(init, &status, WNOHANG);
    if (r == init) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(init, SIGKILL);
      ::waitpid(init, &status, 0);
      timed_out = true;
      break;
    }
    timespec ts{0, 2 * 1000 * 1000};
    ::nanosleep(&ts, nullptr);
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string msg;
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) msg.append(buf, n);
  ::rmdir(root.c_str());
  char t[64];
  std::snprintf(t, sizeof t, "%.4f", elapsed);
  const std::string common =
      std::string(",\"timed_out\":") + (timed_out ? "true" : "false") + ",\"time_s\":" + t + "}";
  if (!msg.empty() && msg[0] == 'E') {
    Report("{\"setup_error\":\"" + JsonEscape(msg.substr(1, msg.find('\n') - 1)) + "\"" + common);
  } else if (!msg.empty() && msg[0] == 'S') {
    Report("{\"signal\":" + msg.substr(1) + common);
  } else if (!msg.empty() && msg[0] == 'X') {
    Report("{\"exit_code\":" + msg.substr(1) + common);
  } else {
    Report(std::string("{\"signal\":9") + common);  // killed on the deadline before reporting
  }
  return 0;
}
