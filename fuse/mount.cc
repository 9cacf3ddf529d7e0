// `nix-lazy-store mount`: daemonisation, readiness, signals, and the FUSE session.
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "cache/lazy_store.h"
#include "cache/store_cache.h"
#include "fetch/error.h"
#include "fetch/fetcher.h"
#include "fetch/log.h"
#include "fuse/commands.h"
#include "fuse/fuse_api.h"
#include "fuse/lazy_fs.h"
#include "fuse/metrics_server.h"
#include "fuse/store_config.h"

namespace nls {

namespace {

// libfuse 3.14 never sets FUSE_PARALLEL_DIROPS in its INIT reply, even when the file system
// asks for FUSE_CAP_PARALLEL_DIROPS: the kernel then serialises LOOKUPs in a directory, so
// cold lookups of different store paths (each a whole fetch) ran one after the other. The
// session's I/O goes through these two functions (fuse_session_custom_io, same fd), which set
// the flag in the INIT reply when the kernel offered it. Everything else passes unchanged.
std::atomic<uint64_t> g_init_unique{0};
std::atomic<bool> g_kernel_parallel_dirops{false};

ssize_t SessionRead(int fd, void* buf, size_t len, void*) {
  const ssize_t n = ::read(fd, buf, len);
  if (n >= ssize_t(sizeof(fuse_in_header) + sizeof(fuse_init_in)) && g_init_unique.load() == 0) {
    fuse_in_header in;
    std::memcpy(&in, buf, sizeof(in));
    if (in.opcode == FUSE_INIT) {
      fuse_init_in init;
      std::memcpy(&init, static_cast<char*>(buf) + sizeof(in), sizeof(init));
      g_kernel_parallel_dirops = (init.flags & FUSE_PARALLEL_DIROPS) != 0;
      g_init_unique = in.unique;
    }
  }
  return n;
}

// Replies spliced from chunk files (LazyFsOptions::splice_reads) leave the pipe this way; libfuse
// offers FUSE_CAP_SPLICE_WRITE to a custom-I/O session only when this is set.
ssize_t SessionSpliceSend(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                          unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

ssize_t SessionWritev(int fd, iovec* iov, int count, void*) {
  const uint64_t init_unique = g_init_unique.load();
  if (init_unique != 0 && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(uint32_t)) {
    fuse_out_header out;
    std::memcpy(&out, iov[0].iov_base, sizeof(out));
    if (out.unique == init_unique && out.error == 0 && g_kernel_parallel_dirops) {
      uint32_t flags;
      char* p = static_cast<char*>(iov[1].iov_base) + offsetof(fuse_init_out, flags);
      std::memcpy(&flags, p, sizeof(flags));
      flags |= FUSE_PARALLEL_DIROPS;
      std::memcpy(p, &flags, sizeof(flags));
    }
  }
  return ::writev(fd, iov, count);
}

// Signal used to wake the session loop's main thread after fuse_session_exit().
constexpr int kWakeSignal = SIGUSR1;

void NoopHandler(int) {}

struct SessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};

// Writes the readiness byte (0 = mounted) to the parent and closes the pipe.
void SignalParent(int& fd, char status) {
  if (fd < 0) return;
  (void)!::write(fd, &status, 1);
  ::close(fd);
  fd = -1;
}

void RedirectToDevNull(int target_fd, int flags) {
  int fd = ::open("/dev/null", flags | O_CLOEXEC);
  if (fd >= 0) {
    ::dup2(fd, target_fd);
    ::close(fd);
  }
}

// Raises the kernel readahead of the new mount (its bdi, found through /proc/self/mountinfo
// without touching the mount itself, whose requests nobody serves yet) to `kib`: cold
// sequential reads then arrive as 1 MiB FUSE reads instead of 128 KiB ones. Best effort.
void RaiseReadahead(const std::string& mountpoint, int kib) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, dev;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, majmin, root, point;
    if (!(fields >> id >> parent >> majmin >> root >> point)) continue;
    if (point == mountpoint && line.find(" - fuse") != std::string::npos) dev = majmin;
  }
  if (dev.empty()) return;
  std::ofstream ra("/sys/class/bdi/" + dev + "/read_ahead_kb");
  ra << kib << "\n";
  ra.flush();
  if (!ra) {
    NLS_LOG(kDebug) << "could not set the readahead of " << mountpoint << " (bdi " << dev << ")";
  }
}

// The mounted daemon (runs in the child when detaching).
int Serve(const MountCommand& cmd, const StoreSetup& setup, int& ready_fd) {
  // Signals: SIGINT/SIGTERM/SIGHUP are taken by a dedicated thread (sigwait), so no other
  // thread (curl, workers) is ever interrupted by them. Block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = NoopHandler;  // no SA_RESTART: interrupts the loop's sem_wait
  sigaction(kWakeSignal, &sa, nullptr);

  std::unique_ptr<StoreCache> cache;
  std::unique_ptr<Fetcher> fetcher;
  try {
    cache = StoreCache::Open(setup.cache);
    fetcher = Fetcher::Create(setup.fetch);
  } catch (const std::exception& e) {
    NLS_LOG(kError) << "mount " << cmd.mountpoint << ": " << e.what();
    return 1;
  }
  LazyStoreOptions lazy_options;
  lazy_options.prefetch_references = cmd.store.prefetch_references;
  lazy_options.cache_budget_bytes = setup.cache.max_bytes;
  LazyStore lazy(*cache, *fetcher, lazy_options);
  LazyFsOptions fs_options;
  LazyFs fs(*cache, *fetcher, lazy, fs_options);

  std::string mount_opts = "fsname=nix-lazy-store,subtype=nix-lazy-store,ro,default_permissions";
  if (cmd.allow_other) mount_opts += ",allow_other";
  // NLS_FUSE_DEBUG=1 makes libfuse print every request (diagnostics only).
  const bool fuse_debug = std::getenv("NLS_FUSE_DEBUG") != nullptr;
  const char* argv[] = {"nix-lazy-store", "-o", mount_opts.c_str(), "-d"};
  fuse_args args = FUSE_ARGS_INIT(fuse_debug ? 4 : 3, const_cast<char**>(argv));
  std::unique_ptr<fuse_session, SessionDeleter> session(
      fuse_session_new(&args, &LazyFs::Ops(), sizeof(fuse_lowlevel_ops), &fs));
  fuse_opt_free_args(&args);
  if (!session) {
    NLS_LOG(kError) << "mount " << cmd.mountpoint << ": could not create the FUSE session";
    return 1;
  }
  if (fuse_session_mount(session.get(), cmd.mountpoint.c_str()) != 0) {
    NLS_LOG(kError) << "mount " << cmd.mountpoint
                    << ": mounting failed (is /dev/fuse usable and the directory present?)";
    return 1;
  }
  {
    fuse_custom_io io{};
    io.read = SessionRead;
    io.writev = SessionWritev;
    io.splice_send = SessionSpliceSend;
    if (fuse_session_custom_io(session.get(), &io, fuse_session_fd(session.get())) != 0) {
      NLS_LOG(kWarn) << "mount " << cmd.mountpoint
                     << ": cannot hook the FUSE session's I/O; lookups will be serialised";
    }
  }
  fs.StartInvalidator(session.get());

  std::unique_ptr<MetricsServer> metrics;
  if (!cmd.metrics_listen.empty()) {
    try {
      metrics = std::make_unique<MetricsServer>(ParseListenAddress(cmd.metrics_listen),
                                                [&fs] { return PrometheusText(fs.Figures()); });
    } catch (const std::exception& e) {
      NLS_LOG(kError) << e.what();
      fs.StopInvalidator();
      fuse_session_unmount(session.get());
      return 1;
    }
  }
  // Pinned paths: fetch their closures in the background (the cache keeps them).
  std::thread pin_thread;
  if (!setup.cache.pins.empty()) {
    std::vector<std::string> roots;
    for (const std::string& pin : setup.cache.pins) {
      roots.push_back(pin.substr(0, StorePath::kHashLength));
    }
    pin_thread = std::thread([&lazy, roots] {
      ClosureProgress p = lazy.FetchClosure(roots, 2);
      NLS_LOG(kInfo) << "pinned closures: " << p.known << " paths, " << p.fetched << " fetched, "
                     << p.already_cached << " already cached, " << p.failed << " failed";
    });
  }

  // After the kernel processed our INIT reply (which caps the readahead at its proposal).
  std::thread readahead_thread([&fs, mountpoint = cmd.mountpoint] {
    for (int i = 0; i < 500 && !fs.initialized(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (fs.initialized()) RaiseReadahead(mountpoint, int(fs.read_size() / 1024));
  });
  // The signal thread: cancel downloads, make the loop exit, wake its main thread.
  const pthread_t main_thread = pthread_self();
  std::atomic<bool> loop_done{false};
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (loop_done) return;
    NLS_LOG(kInfo) << "got " << strsignal(sig) << ": cancelling downloads and unmounting "
                   << cmd.mountpoint;
    NotifySystemd("STOPPING=1");
    fetcher->Cancel();
    // While the loop still answers requests: the invalidator may be waiting in the kernel for
    // root lookups, which a loop told to exit would leave unanswered (and it never return).
    fs.StopInvalidator();
    fuse_session_exit(session.get());
    pthread_kill(main_thread, kWakeSignal);
  });

  NLS_LOG(kInfo) << "mounted " << cmd.mountpoint << " (cache " << setup.cache.dir << ", "
                 << setup.fetch.substituters.size() << " substituter(s)"
                 << (setup.nix_conf_used.empty() ? "" : ", nix.conf " + setup.nix_conf_used)
                 << (metrics ? ", metrics on port " + std::to_string(metrics->port()) : "") << ")";
  SignalParent(ready_fd, 0);
  NotifySystemd("READY=1\nMAINPID=" + std::to_string(::getpid()));

  fuse_loop_config* loop_config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(loop_config, 64);
  fuse_loop_cfg_set_idle_threads(loop_config, 16);
  const int rc = fuse_session_loop_mt(session.get(), loop_config);
  fuse_loop_cfg_destroy(loop_config);

  loop_done = true;
  readahead_thread.join();
  pthread_kill(signal_thread.native_handle(), SIGTERM);  // wakes sigwait if still waiting
  signal_thread.join();
  fetcher->Cancel();
  if (pin_thread.joinable()) pin_thread.join();
  lazy.Shutdown();
  fs.StopInvalidator();
  metrics.reset();
  fuse_session_unmount(session.get());
  NLS_LOG(kInfo) << "unmounted " << cmd.mountpoint;
  return rc < 0 ? 1 : 0;
}

}  // namespace

int RunMount(const MountCommand& command) {
  MountCommand cmd = command;
  if (char* real = ::realpath(command.mountpoint.c_str(), nullptr)) {
    cmd.mountpoint = real;
    std::free(real);
  }
  if (cmd.store.log_level) SetLogLevel(*cmd.store.log_level);
  if (!cmd.log_file.empty()) {
    int fd = ::open(cmd.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::cerr << "nix-lazy-store mount: --log-file " << Quoted(cmd.log_file) << ": "
                << std::strerror(errno) << "\n";
      return 2;
    }
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  std::optional<StoreSetup> setup = StoreSetupOrReport(cmd.store, "mount");
  if (!setup) return 2;
  struct stat st;
  if (::stat(cmd.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::cerr << "nix-lazy-store mount: mount point " << Quoted(cmd.mountpoint)
              << " is not a directory\n";
    return 1;
  }
  if (cmd.foreground) {
    int no_parent = -1;
    return Serve(cmd, *setup, no_parent);
  }

  // Detach: fork before any thread exists; the child reports readiness through a pipe.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::cerr << "nix-lazy-store mount: pipe: " << std::strerror(errno) << "\n";
    return 1;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    std::cerr << "nix-lazy-store mount: fork: " << std::strerror(errno) << "\n";
    return 1;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::setsid();
    RedirectToDevNull(STDIN_FILENO, O_RDONLY);
    RedirectToDevNull(STDOUT_FILENO, O_WRONLY);
    if (::chdir("/") != 0) {
      // Harmless: only keeps a directory busy.
    }
    int ready_fd = fds[1];
    int rc = Serve(cmd, *setup, ready_fd);
    SignalParent(ready_fd, 1);
    ::_exit(rc);
  }
  ::close(fds[1]);
  char status = 1;
  ssize_t n;
  do {
    n = ::read(fds[0], &status, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  if (n == 1 && status == 0) return 0;
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  std::cerr << "nix-lazy-store mount: could not mount " << cmd.mountpoint
            << " (see the messages above)\n";
  return 1;
}

}  // namespace nls
