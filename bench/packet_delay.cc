// packet_delay: a userspace network delayer for benchmarks (bench/net_bench.py).
//
// There is no netem qdisc on the project's machines, so latency is emulated with NFQUEUE: the
// caller sends packets to queue N with iptables (e.g. `iptables-legacy -A OUTPUT -o IF -j NFQUEUE
// --queue-num N` and the same on INPUT, inside a network namespace), and this program holds every
// queued packet for a fixed time, then accepts it. Packets leave in arrival order (one FIFO, one
// hold time). It fails closed: the queue is bound without the fail-open flag and the iptables rule
// must not use --queue-bypass, so when this program is not running (or its socket overflows)
// packets are dropped, never passed undelayed.
//
// Usage: packet_delay --queue N --delay-us D [--max-queue-len L]
// Prints "ready queue=N delay_us=D" on stdout once bound; on SIGUSR1 prints "packets N" (the total
// so far, so a caller can count the packets of one measurement); runs until SIGINT/SIGTERM, then
// prints statistics (packets, netlink overruns, lateness) on stderr. Must run as root in the
// network namespace whose iptables rules feed the queue.
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include <libnetfilter_queue/libnetfilter_queue.h>

#include "fetch/error.h"

namespace nls {
namespace {

using Nanos = int64_t;

Nanos Now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<Nanos>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

volatile sig_atomic_t g_stop = 0;
volatile sig_atomic_t g_report = 0;
void OnSignal(int sig) {
  if (sig == SIGUSR1) {
    g_report = 1;
  } else {
    g_stop = 1;
  }
}

struct Held {
  uint32_t id;
  Nanos due;
};

struct Stats {
  uint64_t packets = 0;
  uint64_t overruns = 0;  // ENOBUFS: the kernel dropped queued packets (fail closed)
  Nanos max_late = 0;     // latest release after the due time
  Nanos sum_late = 0;
};

struct Delayer {
  Nanos delay;
  std::deque<Held> held;
  Stats stats;
};

int OnPacket(nfq_q_handle*, nfgenmsg*, nfq_data* nfa, void* data) {
  auto* d = static_cast<Delayer*>(data);
  const nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
  if (ph == nullptr) return 0;
  d->held.push_back({ntohl(ph->packet_id), Now() + d->delay});
  ++d->stats.packets;
  return 0;
}

struct HandleCloser {
  void operator()(nfq_handle* h) const { nfq_close(h); }
};
struct QueueCloser {
  void operator()(nfq_q_handle* q) const { nfq_destroy_queue(q); }
};

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Accepts every held packet whose time has come (ids grow with arrival and every packet waits the
// same time, so the due packets are a prefix of the FIFO: one batch verdict releases them).
void ReleaseDue(Delayer& d, nfq_q_handle* q) {
  const Nanos now = Now();
  uint32_t last = 0;
  bool any = false;
  while (!d.held.empty() && d.held.front().due <= now) {
    const Nanos late = now - d.held.front().due;
    d.stats.max_late = std::max(d.stats.max_late, late);
    d.stats.sum_late += late;
    last = d.held.front().id;
    any = true;
    d.held.pop_front();
  }
  if (any && nfq_set_verdict_batch(q, last, NF_ACCEPT) < 0) {
    throw Error(Errno("packet_delay: nfq_set_verdict_batch failed"));
  }
}

void Run(int queue_num, Nanos delay, uint32_t max_len) {
  // Default timer slack (50 us) would add up to 50 us to every hold.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  Delayer d{delay, {}, {}};
  std::unique_ptr<nfq_handle, HandleCloser> h(nfq_open());
  if (!h) throw Error(Errno("packet_delay: nfq_open failed (root? nfnetlink_queue module?)"));
  std::unique_ptr<nfq_q_handle, QueueCloser> q(
      nfq_create_queue(h.get(), static_cast<uint16_t>(queue_num), &OnPacket, &d));
  if (!q) {
    throw Error(Errno(("packet_delay: cannot bind NFQUEUE " + std::to_string(queue_num) +
                       " (already bound by another process?)")
                          .c_str()));
  }
  // Metadata only: the verdict does not change the packet, so its bytes need not be copied.
  if (nfq_set_mode(q.get(), NFQNL_COPY_META, 0) < 0) {
    throw Error(Errno("packet_delay: nfq_set_mode failed"));
  }
  if (nfq_set_queue_maxlen(q.get(), max_len) < 0) {
    throw Error(Errno("packet_delay: nfq_set_queue_maxlen failed"));
  }
  // GSO packets are queued whole instead of segmented first (less work per byte); no fail-open.
  if (nfq_set_queue_flags(q.get(), NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0) {
    throw Error(Errno("packet_delay: nfq_set_queue_flags(GSO) failed"));
  }
  nfnl_rcvbufsiz(nfq_nfnlh(h.get()), 16u << 20);
  const int fd = nfq_fd(h.get());

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  sigset_t block, empty;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGUSR1);
  sigemptyset(&empty);
  sigprocmask(SIG_BLOCK, &block, nullptr);

  std::printf("ready queue=%d delay_us=%lld\n", queue_num, static_cast<long long>(delay / 1000));
  std::fflush(stdout);

  alignas(8) static char buf[1 << 16];
  while (!g_stop) {
    if (g_report) {
      g_report = 0;
      std::printf("packets %llu\n", static_cast<unsigned long long>(d.stats.packets));
      std::fflush(stdout);
    }
    ReleaseDue(d, q.get());
    pollfd pfd{fd, POLLIN, 0};
    timespec ts{};
    timespec* tsp = nullptr;
    if (!d.held.empty()) {
      const Nanos wait = std::max<Nanos>(0, d.held.front().due - Now());
      ts.tv_sec = wait / 1'000'000'000;
      ts.tv_nsec = wait % 1'000'000'000;
      tsp = &ts;
    }
    const int r = ppoll(&pfd, 1, tsp, &empty);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(Errno("packet_delay: ppoll failed"));
    }
    if (r == 0) continue;
    for (;;) {
      const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        if (errno == ENOBUFS) {
          ++d.stats.overruns;
          continue;
        }
        throw Error(Errno("packet_delay: recv from NFQUEUE socket failed"));
      }
      nfq_handle_packet(h.get(), buf, static_cast<int>(n));
      ReleaseDue(d, q.get());
    }
  }
  const Stats& s = d.stats;
  std::fprintf(
      stderr,
      "packet_delay: %llu packets, %llu netlink overruns (packets dropped), lateness "
      "mean %.1f us max %.1f us, %zu still held at exit (dropped)\n",
      static_cast<unsigned long long>(s.packets), static_cast<unsigned long long>(s.overruns),
      s.packets ? static_cast<double>(s.sum_late) / 1e3 / static_cast<double>(s.packets) : 0.0,
      static_cast<double>(s.max_late) / 1e3, d.held.size());
}

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(stderr,
               "packet_delay: %s\nusage: packet_delay --queue N --delay-us D "
               "[--max-queue-len L]\n",
               msg);
  std::exit(2);
}

long ParseNumber(const char* flag, const char* text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    Usage((std::string("bad value for ") + flag + ": " + Quoted(text)).c_str());
  }
  return v;
}

}  // namespace
}  // namespace nls

int main(int argc, char** argv) {
  long queue = -1, delay_us = -1, max_len = 100000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) nls::Usage(("missing value after " + a).c_str());
    if (a == "--queue") {
      queue = nls::ParseNumber("--queue", argv[++i], 0, 65535);
    } else if (a == "--delay-us") {
      delay_us = nls::ParseNumber("--delay-us", argv[++i], 0, 10'000'000);
    } else if (a == "--max-queue-len") {
      max_len = nls::ParseNumber("--max-queue-len", argv[++i], 1, 10'000'000);
    } else {
      nls::Usage(("unknown argument " + nls::Quoted(a)).c_str());
    }
  }
  if (queue < 0 || delay_us < 0) nls::Usage("--queue and --delay-us are required");
  try {
    nls::Run(static_cast<int>(queue), static_cast<nls::Nanos>(delay_us) * 1000,
             static_cast<uint32_t>(max_len));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
